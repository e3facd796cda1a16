#!/usr/bin/env python3
"""Build the wheelhouse a release is installed from, on the controller.

The application is built into a wheel; its dependencies (and any extra distributions) are
resolved by uv for the hosts' Python and platform, which need not be the controller's, and
downloaded by pip as binary wheels for them. Prints a JSON manifest: the release id (a
digest of every file's content, so the same inputs give the same release), the files, in
install order, and the bundle: one uncompressed tar of those files (wheels are compressed
already), byte for byte the same for the same release, so a host gets a release in one
copy and a later run copies nothing.

Resolving and downloading the dependencies asks the index about every one of them, which
takes most of a build. With --resolved-max-age, a resolution of the same requirements
(every local wheel's Requires-Dist, the extras, the hosts' Python and platform) made less
than that many seconds ago is used again, its wheels already in the wheelhouse: deploying
the same code twice in that time gives the same release, without a question to the index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

SAVED = re.compile(r"^(?:Saved|File was already downloaded) (?P<path>\S+\.whl)\s*$")
MANYLINUX = re.compile(r"^manylinux_2_(?P<glibc>\d+)_(?P<arch>\w+)$")
# The newest manylinux_2_N the pinned uv (requirements.txt) resolves for.
UV_NEWEST_GLIBC = 40


def platforms(platform: str) -> list[str]:
    """The platform tags a host accepts: pip takes --platform literally, so a glibc 2.36
    host (manylinux_2_36) also accepts every older manylinux tag, down to manylinux2014."""
    match = MANYLINUX.match(platform)
    if not match:
        return [platform]
    arch, newest = match["arch"], int(match["glibc"])
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def run(tool: str, *args: str) -> str:
    """A Python tool of the controller's environment (pip, uv), its output; stops on failure."""
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [sys.executable, "-m", tool, *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{tool} {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def pip(*args: str) -> str:
    return run("pip", *args)


def build_wheel(source: Path, wheelhouse: Path) -> Path:
    """The project's wheel, built in a directory of this run's own (two runs sharing the
    wheelhouse, a Molecule scenario and `make converge`, never see each other's builds), then
    renamed into files/. uv builds it, in a build environment it keeps in its cache."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=wheelhouse) as build_dir:
        run("uv", "build", "--wheel", "--quiet", "--out-dir", build_dir, str(source))
        wheels = sorted(Path(build_dir).glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one wheel from {source}, found {[w.name for w in wheels]}")
        target = wheelhouse / "files" / wheels[0].name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(wheels[0], target)
    return target


def uv_platform(platform: str) -> str:
    """uv's name for the hosts' platform (x86_64-manylinux_2_40), at most the newest manylinux
    uv knows: a wheel for a newer glibc is still picked by pip's download below."""
    match = MANYLINUX.match(platform)
    if not match:
        return platform
    return f"{match['arch']}-manylinux_2_{min(int(match['glibc']), UV_NEWEST_GLIBC)}"


def resolve(local: list[Path], extras: list[str], python_version: str, platform: str) -> list[str]:
    """The release's dependencies pinned (`name==version`) for the hosts. uv evaluates
    environment markers (`greenlet<3; python_version < "3.12"`) for the hosts' Python;
    pip's --python-version only filters wheel tags and evaluates markers for the
    controller's own Python, which need not be the hosts'."""
    names = {distribution(wheel) for wheel in local}
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.in"
        requirements.write_text(
            "".join(f"{distribution(w)} @ {w.as_uri()}\n" for w in local)
            + "".join(f"{extra}\n" for extra in extras)
        )
        output = run(
            "uv", "pip", "compile", str(requirements),
            "--python-version", python_version,
            "--python-platform", uv_platform(platform),
            "--only-binary", ":all:", "--no-header", "--no-annotate", "--quiet",
        )  # fmt: skip
    pins = [line.strip() for line in output.splitlines() if "==" in line and " @ " not in line]
    return [pin for pin in pins if canonical(pin.split("==", 1)[0]) not in names]


def requires_dist(wheel: Path) -> list[str]:
    """The requirements a wheel declares (its METADATA's Requires-Dist headers)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = archive.read(name).decode().split("\n\n", 1)[0]
    return sorted(
        line.split(":", 1)[1].strip()
        for line in headers.splitlines()
        if line.startswith("Requires-Dist:")
    )


def requirements_key(
    local: list[Path], extras: list[str], python_version: str, platform: str
) -> str:
    """What a resolution depends on, as a digest: the same key, the same question to the
    index. The local wheels count by name and requirements, not content: a change of code
    alone asks nothing new."""
    lines = [python_version, platform, *sorted(extras)]
    for wheel in sorted(local, key=distribution):
        lines += [distribution(wheel), *requires_dist(wheel)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def download_dependencies(
    local: list[Path],
    extras: list[str],
    wheelhouse: Path,
    python_version: str,
    platform: str,
    max_age: float = 0,
) -> list[Path]:
    """The dependencies of the local wheels and the extras, as binary wheels for the hosts:
    those of a resolution of the same requirements younger than max_age seconds when its
    wheels are all there, else resolved and downloaded now (and kept for the next build)."""
    saved = (
        wheelhouse
        / "resolved"
        / f"{requirements_key(local, extras, python_version, platform)}.json"
    )
    if max_age > 0 and saved.is_file() and time.time() - saved.stat().st_mtime < max_age:
        kept = [wheelhouse / "files" / name for name in json.loads(saved.read_text())]
        if all(path.is_file() for path in kept):
            return kept
    pins = resolve(local, extras, python_version, platform)
    found: list[Path] = []
    if pins:
        output = pip(
            "download",
            "--dest", str(wheelhouse / "files"),
            "--no-deps",
            "--only-binary=:all:",
            "--python-version", python_version,
            "--implementation", "cp",
            *(arg for tag in platforms(platform) for arg in ("--platform", tag)),
            *pins,
        )  # fmt: skip
        lines = (line.strip() for line in output.splitlines())
        found = [
            wheelhouse / "files" / Path(m["path"]).name
            for line in lines
            if (m := SAVED.match(line))
        ]
    saved.parent.mkdir(parents=True, exist_ok=True)
    partial = saved.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps([path.name for path in found]))
    partial.replace(saved)
    return found


def canonical(name: str) -> str:
    """A distribution name as wheel file names and PEP 503 compare it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution(wheel: Path) -> str:
    """The canonical distribution name of a wheel file (`Flask_Session-0.8.0-...whl`)."""
    return canonical(wheel.name.split("-", 1)[0])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_files(local: list[Path], dependencies: list[Path]) -> tuple[str, list[Path]]:
    """The release id and the files in install order: dependencies, then the local wheels."""
    files = sorted({p.name: p for p in dependencies}.values(), key=lambda p: p.name)
    files += local
    release = hashlib.sha256(
        "".join(f"{p.name}:{digest(p)}\n" for p in files).encode()
    ).hexdigest()[:12]
    return release, files


def bundle(wheelhouse: Path, release: str, files: list[Path]) -> Path:
    """`<wheelhouse>/bundles/<release>.tar`: the files in install order, with fixed owner,
    mode and time, so the same release always gives the same bytes. Written once."""
    path = wheelhouse / "bundles" / f"{release}.tar"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tar.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for file in files:
            info = tarfile.TarInfo(file.name)
            info.size = file.stat().st_size
            info.mode, info.mtime, info.uid, info.gid = 0o644, 315532800, 0, 0
            with file.open("rb") as data:
                tar.addfile(info, data)
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--source", type=Path, help="the application project; none: only --extra from PyPI"
    )
    parser.add_argument("--wheelhouse", type=Path, required=True)
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument(
        "--local", type=Path, action="append", default=[], help="another project to build in"
    )
    parser.add_argument(
        "--resolved-max-age",
        type=float,
        default=0,
        help="seconds a resolution of the same requirements is used again (0: never)",
    )
    parser.add_argument(
        "--require",
        action="append",
        default=[],
        help="a distribution the release must contain (the kit runs its scripts)",
    )
    args = parser.parse_args(argv)
    projects = [(p, "app_local_packages") for p in args.local]
    if args.source is not None:
        projects.append((args.source, "app_source_dir"))
    elif not args.extra:
        raise SystemExit("app_source_dir is empty and app_extra_packages lists nothing to install")
    for source, name in projects:
        if not (source / "pyproject.toml").is_file():
            raise SystemExit(f"{name}: {source} has no pyproject.toml")
    wheelhouse = args.wheelhouse.resolve()
    # The application last: installed after everything it may import.
    local = [build_wheel(p.resolve(), wheelhouse) for p, _ in projects]
    dependencies = download_dependencies(
        local, args.extra, wheelhouse, args.python_version, args.platform, args.resolved_max_age
    )
    release, files = release_files(local, dependencies)
    missing = sorted(set(map(canonical, args.require)) - {distribution(p) for p in files})
    if missing:
        raise SystemExit(
            f"the release has no {', '.join(missing)}: the kit runs it from the release's "
            "virtualenv, so add it to the application's dependencies or to app_extra_packages"
        )
    manifest = {
        "release": release,
        "files": [str(p) for p in files],
        "bundle": str(bundle(wheelhouse, release, files)),
    }
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
