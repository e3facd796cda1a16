"""The release builder's checks that need no index: what it refuses, and how it names wheels."""

from __future__ import annotations

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
