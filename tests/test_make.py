"""The Makefile and its helper scripts do what the README says on a fresh machine.

Nothing here installs anything: `apt-get`, `id` and the Python under test are stand-ins on
PATH that record how they were called.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


@pytest.fixture
def fresh_machine(tmp_path: Path) -> dict[str, Path]:
    """A Python without venv (until python3-venv is "installed"), a recording apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    installed = tmp_path / "python3-venv-installed"
    calls = tmp_path / "apt-get.calls"
    stand_in(bin_dir, "fake-python", f'test -e "{installed}"')
    stand_in(
        bin_dir,
        "apt-get",
        f'echo "$*" >> "{calls}"\ncase "$*" in *install*) touch "{installed}";; esac',
    )
    return {"bin": bin_dir, "installed": installed, "calls": calls}


def python_venv(machine: dict[str, Path], uid: int) -> subprocess.CompletedProcess[str]:
    stand_in(machine["bin"], "id", f"echo {uid}")
    return subprocess.run(
        [str(ROOT / "scripts" / "python-venv.sh"), "fake-python"],
        env=dict(os.environ, PATH=f"{machine['bin']}{os.pathsep}{os.environ['PATH']}"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_setup_installs_python3_venv_as_root_on_debian(fresh_machine: dict[str, Path]) -> None:
    result = python_venv(fresh_machine, uid=0)
    assert result.returncode == 0, result.stderr
    assert "installing Debian's python3-venv" in result.stderr
    assert "install -y -qq python3-venv" in fresh_machine["calls"].read_text()


def test_setup_names_the_package_when_it_cannot_install_it(fresh_machine: dict[str, Path]) -> None:
    result = python_venv(fresh_machine, uid=1000)
    assert result.returncode == 1
    assert "sudo apt-get install python3-venv" in result.stderr
    assert not fresh_machine["calls"].exists()


def test_setup_installs_nothing_when_venv_works(fresh_machine: dict[str, Path]) -> None:
    fresh_machine["installed"].touch()
    result = python_venv(fresh_machine, uid=0)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not fresh_machine["calls"].exists()


def test_every_virtualenv_the_makefile_creates_checks_venv_first() -> None:
    lines = (ROOT / "Makefile").read_text().splitlines()
    for n, line in enumerate(lines):
        if "-m venv" in line and "--help" not in line:
            assert "scripts/python-venv.sh" in lines[n - 1], line


def image_seen_by_recipes(*args: str, **env: str) -> str:
    """The KIT_BASE_IMAGE a recipe of the Makefile sees (build-image.sh, local_up.yml and
    Molecule read it from there), for `make ARGS` run with env added."""
    chosen = {"KIT_BASE_IMAGE", "IMAGE", "KIT_DIST", "DIST"}
    variables = {k: v for k, v in os.environ.items() if k not in chosen}
    result = subprocess.run(
        ["make", "-s", "--no-print-directory",
         "--eval", "kit-print-image: ; @echo $$KIT_BASE_IMAGE", "kit-print-image", *args],
        cwd=ROOT, env=variables | env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def test_kit_base_image_from_the_environment_reaches_every_recipe() -> None:
    assert image_seen_by_recipes(KIT_BASE_IMAGE="registry.example/debian:systemd") == (
        "registry.example/debian:systemd"
    )


def test_image_on_the_command_line_wins_and_the_default_stays() -> None:
    assert image_seen_by_recipes("IMAGE=mine:1", KIT_BASE_IMAGE="other:2") == "mine:1"
    assert image_seen_by_recipes() == "kit-trixie-systemd:latest"


def test_dist_picks_the_image_of_its_release() -> None:
    assert image_seen_by_recipes("DIST=bookworm") == "kit-bookworm-systemd:latest"
    assert image_seen_by_recipes(KIT_DIST="bookworm") == "kit-bookworm-systemd:latest"
    assert image_seen_by_recipes("DIST=bookworm", KIT_BASE_IMAGE="mine:2") == "mine:2"


def apt_command(bin_dir: Path, uid: int) -> subprocess.CompletedProcess[str]:
    """scripts/apt-command.sh for a command no machine has, with a recording apt-get that
    "installs" it."""
    stand_in(bin_dir, "id", f"echo {uid}")
    stand_in(
        bin_dir, "apt-get",
        f'echo "$*" >> "{bin_dir}/apt-get.calls"\n'
        f'case "$*" in *install*) printf "#!/bin/sh\\n" > "{bin_dir}/kit-no-such-tool"; '
        f'chmod +x "{bin_dir}/kit-no-such-tool";; esac',
    )  # fmt: skip
    return subprocess.run(
        [str(ROOT / "scripts" / "apt-command.sh"), "kit-no-such-tool", "kit-tool-package"],
        env=dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_missing_tool_is_installed_as_root_on_debian(tmp_path: Path) -> None:
    result = apt_command(tmp_path, uid=0)
    assert result.returncode == 0, result.stderr
    assert "installing Debian's kit-tool-package" in result.stderr
    assert "install -y -qq kit-tool-package" in (tmp_path / "apt-get.calls").read_text()


def test_a_missing_tool_is_named_when_it_cannot_be_installed(tmp_path: Path) -> None:
    result = apt_command(tmp_path, uid=1000)
    assert result.returncode == 1
    assert "sudo apt-get install kit-tool-package" in result.stderr
    assert not (tmp_path / "apt-get.calls").exists()


def test_bench_runs_every_benchmark_and_installs_wrk_first() -> None:
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    wrk = next(n for n, line in enumerate(lines) if "apt-command.sh wrk" in line)
    # stack.py is the module the benchmarks share, not a benchmark; converge_dist.py replaces
    # the running stack and backup_restore.py restores its database, so each is run on its own.
    alone = {
        ROOT / "benchmarks/stack.py",
        ROOT / "benchmarks/converge_dist.py",
        ROOT / "benchmarks/backup_restore.py",
    }
    for benchmark in sorted(set((ROOT / "benchmarks").glob("*.py")) - alone):
        runs = [n for n, line in enumerate(lines) if f"benchmarks/{benchmark.name}" in line]
        assert runs, f"make bench does not run {benchmark.name}"
        assert min(runs) > wrk
    assert not any("converge_dist.py" in line or "backup_restore.py" in line for line in lines)
    # The reaper's benchmark imports kit_reaper: it runs in the reaper's own virtualenv.
    reaper = next(line for line in lines if "benchmarks/reaper_overhead.py" in line)
    assert ".cache/reaper-venv/bin/python" in reaper
