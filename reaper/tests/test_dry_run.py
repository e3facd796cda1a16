"""Dry-run, through the command line: the reaper says what it would do and signals nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import Gunicorn, in_background, wait_for

CONFIG = """\
scoreboard_dir = "{directory}"
scan_interval_s = 0.2
dry_run = true
stacks = false

[deadline]
default_s = 1
methods = {{}}
paths = {{ "/long/" = 30 }}

[memory]
limit_mb = 40
samples = 2
"""


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_dry_run_signals_nothing_and_says_so(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    server = start_gunicorn("sync", workers=2)
    pids = server.worker_pids()
    config = tmp_path / "reaper.toml"
    config.write_text(CONFIG.format(directory=server.directory))
    log = tmp_path / "reaper.log"
    with open(log, "wb") as out:
        reaper = subprocess.Popen(
            [sys.executable, "-m", "kit_reaper", "--config", str(config)], stderr=out
        )
    try:
        # Past the 1 s deadline, and past the 40 MB limit, on the two workers.
        slow = in_background(server, "/sleep?s=3", request_id="slow")
        grow = in_background(server, "/long/grow?mb=80&hold=3", request_id="grow")
        slow.join()
        grow.join()

        def both_reported() -> bool:
            events = {e.get("event") for e in json_lines(log)}
            return {"kill", "recycle"} <= events

        wait_for("both actions in the log", both_reported)
    finally:
        reaper.send_signal(signal.SIGTERM)
        exit_code = reaper.wait(10)

    assert slow.response is not None
    assert slow.response.status == 200
    assert grow.response is not None
    assert grow.response.status == 200
    assert server.worker_pids() == pids  # both workers survived
    events = json_lines(log)
    kill = next(e for e in events if e["event"] == "kill")
    recycle = next(e for e in events if e["event"] == "recycle")
    assert kill["dry_run"] is True
    assert kill["request_id"] == "slow"
    assert kill["path"] == "/sleep"
    assert kill["signal"] == "SIGABRT"
    assert recycle["dry_run"] is True
    assert recycle["pid"] == grow.response.pid
    # Said once each, not every scan.
    assert [e["event"] for e in events].count("kill") == 1
    assert [e["event"] for e in events].count("recycle") == 1
    assert exit_code == 0
    assert events[-1]["event"] == "stopped"
