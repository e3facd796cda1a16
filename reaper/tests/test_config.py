"""The TOML config: the documented example, defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit_reaper import config
from kit_reaper.config import Config, ConfigError

EXAMPLE = """\
scoreboard_dir = "/dev/shm/kit-reaper"
scan_interval_s = 1.0
dry_run = false

[deadline]
default_s = 120
methods = { POST = 600, put = 300 }
paths = { "/reports/" = 900 }
abort_grace_s = 5

[memory]
limit_mb = 512
samples = 3
recycle_budget = 1
drain_s = 30
recycle_idle = false

[metrics]
address = "127.0.0.1"
port = 9405
"""


def test_example_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "reaper.toml"
    path.write_text(EXAMPLE)

    loaded = config.load(path)

    assert loaded.deadline.methods == {"POST": 600.0, "PUT": 300.0}
    assert loaded.deadline.deadlines().for_request("GET", "/reports/x") == 900
    assert loaded.deadline.longest_s == 900
    assert loaded.memory.limit_bytes == 512 << 20
    assert loaded.memory.recycle_idle is False
    assert Config().memory.recycle_idle is True
    assert loaded.metrics.port == 9405


def test_empty_config_means_the_defaults() -> None:
    assert config.parse({}) == Config()
    assert Config().deadline.deadlines().for_request("POST", "/") == 600
    assert Config().deadline.deadlines().for_request("GET", "/") == 120


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[memory]\nlimit_mb = "512MB"',
            "memory.limit_mb: expected a number >= 0, found '512MB' (str)",
        ),
        ("[memory]\nsamples = 0", "memory.samples: expected an integer >= 1, found 0 (int)"),
        ("[memory]\nsamples = 2.5", "memory.samples: expected an integer >= 1, found 2.5 (float)"),
        ("dry_run = 1", "dry_run: expected true or false, found 1 (int)"),
        (
            "[deadline]\nmethods = { POST = -1 }",
            "deadline.methods.POST: expected a number >= 0.01, found -1 (int)",
        ),
        (
            '[deadline]\npaths = { "reports" = 900 }',
            "deadline.paths: expected path prefixes starting with '/', found 'reports'",
        ),
        (
            "[metrics]\nport = 70000",
            "metrics.port: expected an integer >= 0 and <= 65535, found 70000 (int)",
        ),
        ("[memory]\nlimt_mb = 5", "memory.limt_mb: expected one of "),
        ("deadline = 5", "deadline: expected a table, found 5 (int)"),
    ],
)
def test_bad_value_is_reported_with_its_key_what_was_expected_and_found(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "reaper.toml"
    path.write_text(toml)

    with pytest.raises(ConfigError) as raised:
        config.load(path)

    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_missing_file_and_bad_toml_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a TOML config file, found no such file"):
        config.load(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("limit_mb = = 3")
    with pytest.raises(ConfigError, match="expected valid TOML"):
        config.load(tmp_path / "bad.toml")
