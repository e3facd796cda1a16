"""The release builder's checks that need no index: what it refuses, how it names wheels,
and when it asks the index again (its calls to uv and pip recorded instead)."""

from __future__ import annotations

import os
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import load_plugin

builder = load_plugin("roles/app/files/build_wheelhouse.py")


def test_nothing_to_install_is_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="app_source_dir is empty and app_extra_packages"):
        builder.main(["--wheelhouse", str(tmp_path), "--python-version", "3.13", "--platform", "x"])


def test_a_source_without_a_project_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"app_source_dir: .* has no pyproject\.toml"):
        builder.main(
            ["--source", str(tmp_path), "--wheelhouse", str(tmp_path / "w"),
             "--python-version", "3.13", "--platform", "x"]
        )  # fmt: skip


def test_wheels_are_matched_by_their_canonical_distribution_name() -> None:
    assert builder.distribution(Path("Flask_Session-0.8.0-py3-none-any.whl")) == "flask-session"
    assert builder.distribution(Path("gunicorn-23.0.0-py3-none-any.whl")) == "gunicorn"
    assert builder.canonical("Zope.Interface") == "zope-interface"


def test_two_runs_sharing_a_wheelhouse_each_get_their_wheel(tmp_path: Path) -> None:
    """A Molecule scenario and `make converge` build into one wheelhouse at once: neither
    removes the other's build, and each gets its wheel (pip builds the reaper offline)."""
    root = Path(__file__).resolve().parents[1]
    wheelhouse = tmp_path / "wheelhouse"
    with ThreadPoolExecutor(max_workers=3) as pool:
        wheels = list(
            pool.map(lambda _: builder.build_wheel(root / "reaper", wheelhouse), range(3))
        )
    assert {w.name for w in wheels} == {wheels[0].name}
    assert wheels[0].is_file()
    assert sorted(p.name for p in wheelhouse.iterdir()) == ["files"]


def fake_wheel(directory: Path, name: str, requires: list[str]) -> Path:
    """A wheel with only its METADATA: a name and the requirements it declares."""
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    headers = [f"Name: {name}", "Version: 1.0", *(f"Requires-Dist: {r}" for r in requires)]
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            f"{name}-1.0.dist-info/METADATA", "\n".join(headers) + "\n\nRequires-Dist: x\n"
        )
    return wheel


@pytest.fixture
def index_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, ...]]:
    """The calls to uv and pip; pip download 'saves' flask's wheel, uv pins it."""
    calls: list[tuple[str, ...]] = []

    def run(tool: str, *args: str) -> str:
        calls.append((tool, *args))
        if tool == "uv":
            return "flask==3.1.0\n"
        dest = Path(args[args.index("--dest") + 1])
        (dest / "flask-3.1.0-py3-none-any.whl").write_bytes(b"wheel")
        return f"Saved {dest}/flask-3.1.0-py3-none-any.whl\n"

    monkeypatch.setattr(builder, "run", run)
    return calls


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """An empty wheelhouse, its files/ directory made."""
    (tmp_path / "wheelhouse" / "files").mkdir(parents=True)
    return tmp_path / "wheelhouse"


def test_a_recent_resolution_of_the_same_requirements_asks_the_index_nothing(
    tmp_path: Path, wheelhouse: Path, index_calls: list[tuple[str, ...]]
) -> None:
    app = fake_wheel(tmp_path, "app", ["flask>=3"])
    first = builder.download_dependencies([app], ["py-spy"], wheelhouse, "3.13", "x", 3600)
    assert [p.name for p in first] == ["flask-3.1.0-py3-none-any.whl"]
    assert [call[0] for call in index_calls] == ["uv", "pip"]
    # New code with the same requirements: the same dependencies, no question to the index.
    again = builder.download_dependencies([app], ["py-spy"], wheelhouse, "3.13", "x", 3600)
    assert again == first
    assert len(index_calls) == 2


@pytest.mark.parametrize(
    ("change", "requires", "extras", "max_age", "age"),
    [
        ("a requirement", ["flask>=3", "redis"], ["py-spy"], 3600, 0),
        ("an extra", ["flask>=3"], [], 3600, 0),
        ("older than the max age", ["flask>=3"], ["py-spy"], 3600, 3601),
        ("a max age of 0", ["flask>=3"], ["py-spy"], 0, 0),
    ],
)
def test_the_index_is_asked_again_when(
    tmp_path: Path,
    wheelhouse: Path,
    index_calls: list[tuple[str, ...]],
    change: str,
    requires: list[str],
    extras: list[str],
    max_age: float,
    age: float,
) -> None:
    builder.download_dependencies(
        [fake_wheel(tmp_path, "app", ["flask>=3"])], ["py-spy"], wheelhouse, "3.13", "x", 3600
    )
    for saved in (wheelhouse / "resolved").iterdir():
        os.utime(saved, (time.time() - age, time.time() - age))
    (tmp_path / "new").mkdir()
    app = fake_wheel(tmp_path / "new", "app", requires)
    builder.download_dependencies([app], extras, wheelhouse, "3.13", "x", max_age)
    assert [call[0] for call in index_calls] == ["uv", "pip", "uv", "pip"], change


def test_a_resolution_whose_wheels_are_gone_is_made_again(
    tmp_path: Path, wheelhouse: Path, index_calls: list[tuple[str, ...]]
) -> None:
    app = fake_wheel(tmp_path, "app", ["flask>=3"])
    builder.download_dependencies([app], [], wheelhouse, "3.13", "x", 3600)
    (wheelhouse / "files" / "flask-3.1.0-py3-none-any.whl").unlink()
    found = builder.download_dependencies([app], [], wheelhouse, "3.13", "x", 3600)
    assert all(path.is_file() for path in found)
    assert len(index_calls) == 4
