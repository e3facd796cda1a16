#!/usr/bin/env python3
"""Build the wheelhouse a release is installed from, on the controller.

The application is built into a wheel; its dependencies (and any extra distributions) are
downloaded as binary wheels for the hosts' Python and platform, which need not be the
controller's. Prints a JSON manifest: the release id (a digest of every file's content, so
the same inputs give the same release), the files, in install order, and the bundle: one
uncompressed tar of those files (wheels are compressed already), byte for byte the same for
the same release, so a host gets a release in one copy and a later run copies nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

SAVED = re.compile(r"^(?:Saved|File was already downloaded) (?P<path>\S+\.whl)\s*$")
MANYLINUX = re.compile(r"^manylinux_2_(?P<glibc>\d+)_(?P<arch>\w+)$")


def platforms(platform: str) -> list[str]:
    """The platform tags a host accepts: pip takes --platform literally, so a glibc 2.36
    host (manylinux_2_36) also accepts every older manylinux tag, down to manylinux2014."""
    match = MANYLINUX.match(platform)
    if not match:
        return [platform]
    arch, newest = match["arch"], int(match["glibc"])
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def pip(*args: str) -> str:
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"pip {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def build_wheel(source: Path, wheelhouse: Path) -> Path:
    build_dir = wheelhouse / "build"
    shutil.rmtree(build_dir, ignore_errors=True)
    pip("wheel", "--no-deps", "--wheel-dir", str(build_dir), str(source))
    wheels = sorted(build_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel from {source}, found {[w.name for w in wheels]}")
    target = wheelhouse / "files" / wheels[0].name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(wheels[0]), target)
    shutil.rmtree(build_dir)
    return target


def download_dependencies(
    local: list[Path], extras: list[str], wheelhouse: Path, python_version: str, platform: str
) -> list[Path]:
    """The dependencies of the local wheels and the extras, as binary wheels for the hosts."""
    output = pip(
        "download",
        "--dest", str(wheelhouse / "files"),
        "--only-binary=:all:",
        "--python-version", python_version,
        "--implementation", "cp",
        *(arg for tag in platforms(platform) for arg in ("--platform", tag)),
        *(str(wheel) for wheel in local),
        *extras,
    )  # fmt: skip
    found = [Path(m["path"]) for line in output.splitlines() if (m := SAVED.match(line.strip()))]
    names = {wheel.name for wheel in local}
    return [wheelhouse / "files" / p.name for p in found if p.name not in names]


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
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--wheelhouse", type=Path, required=True)
    parser.add_argument("--python-version", required=True)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument(
        "--local", type=Path, action="append", default=[], help="another project to build in"
    )
    args = parser.parse_args(argv)
    for source, name in [
        (args.source, "app_source_dir"),
        *((p, "app_local_packages") for p in args.local),
    ]:
        if not (source / "pyproject.toml").is_file():
            raise SystemExit(f"{name}: {source} has no pyproject.toml")
    wheelhouse = args.wheelhouse.resolve()
    # The application last: installed after everything it may import.
    local = [build_wheel(p.resolve(), wheelhouse) for p in [*args.local, args.source]]
    dependencies = download_dependencies(
        local, args.extra, wheelhouse, args.python_version, args.platform
    )
    release, files = release_files(local, dependencies)
    manifest = {
        "release": release,
        "files": [str(p) for p in files],
        "bundle": str(bundle(wheelhouse, release, files)),
    }
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
