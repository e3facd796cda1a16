"""The command line: config check, its errors, and the JSON log lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kit_reaper import cli
from kit_reaper.reaper import json_emitter


def test_check_accepts_a_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "reaper.toml"
    path.write_text("[memory]\nlimit_mb = 256\n")

    assert cli.main(["--config", str(path), "--check"]) == 0
    assert "is valid" in capsys.readouterr().err


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reaper.toml"
    path.write_text("scan_interval_s = 'fast'\n")

    assert cli.main(["--config", str(path), "--check"]) == 2
    assert "scan_interval_s: expected a number" in capsys.readouterr().err


def test_once_scans_an_empty_directory_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reaper.toml"
    path.write_text(f'scoreboard_dir = "{tmp_path / "none"}"\n')

    assert cli.main(["--config", str(path), "--once"]) == 0
    assert capsys.readouterr().err == ""


def test_log_lines_are_one_json_object_each() -> None:
    stream = io.StringIO()
    emit = json_emitter(stream)

    emit({"event": "kill", "pid": 7, "path": "/x"})
    emit({"event": "exited", "pid": 7})

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["kill", "exited"]
    assert lines[0]["pid"] == 7
    assert "ts" in lines[0]
