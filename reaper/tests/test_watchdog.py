"""A stalled reaper is visible: systemd's notify protocol (READY=1, then WATCHDOG=1 after each
completed scan, from the real command line), the last-scan metric, and a worker whose private
memory cannot be read reported instead of silently never recycled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import reaper_config, scan_in_a_thread, stuck_worker

from kit_reaper import procfs, systemd
from kit_reaper.metrics import Metrics
from kit_reaper.reaper import Event, Reaper


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd listens on for a Type=notify unit."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(15)
        yield sock


def test_notify_sends_one_datagram_to_the_socket_systemd_names(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    assert systemd.notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notify_socket.recv(64) == b"WATCHDOG=1"
    assert systemd.notify("READY=1", {}) is False  # not under systemd: nothing to tell


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"kit-reaper-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert systemd.notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(64) == b"READY=1"


def test_the_command_line_says_ready_then_pings_the_watchdog_after_each_scan(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    config = tmp_path / "reaper.toml"
    config.write_text(f'scoreboard_dir = "{tmp_path / "boards"}"\nscan_interval_s = 0.1\n')
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    with subprocess.Popen(
        [sys.executable, "-m", "kit_reaper", "--config", str(config)], env=env
    ) as reaper:
        try:
            messages = [notify_socket.recv(64) for _ in range(4)]
        finally:
            reaper.send_signal(signal.SIGTERM)
        assert reaper.wait(timeout=15) == 0
    assert messages == [b"READY=1"] + [b"WATCHDOG=1"] * 3


def test_no_heartbeat_while_scans_fail(tmp_path: Path) -> None:
    beats: list[float] = []
    events: list[Event] = []
    reaper = Reaper(reaper_config(tmp_path), emit=events.append, heartbeat=lambda: beats.append(1))

    def broken_scan() -> None:
        raise OSError("the scan cannot complete")

    reaper.scan = broken_scan  # type: ignore[method-assign]
    stop = threading.Event()
    runner = threading.Thread(target=reaper.run, args=(stop,))
    runner.start()
    time.sleep(0.7)
    stop.set()
    runner.join(timeout=10)

    assert beats == []
    assert [e["event"] for e in events].count("scan_failed") >= 2


def test_each_completed_scan_moves_the_last_scan_timestamp(tmp_path: Path) -> None:
    metrics = Metrics()
    reaper = Reaper(reaper_config(tmp_path), metrics=metrics, emit=lambda e: None)
    before = time.time()
    reaper.scan()
    stamp = metrics.registry.get_sample_value("kit_reaper_last_scan_timestamp_seconds")
    assert stamp is not None
    assert before <= stamp <= time.time()


def test_a_worker_whose_private_memory_cannot_be_read_is_reported_once(
    tmp_path: Path,
    sleeper: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/proc/<pid>/smaps_rollup unreadable (a hardened /proc, another user's process): the
    worker can never be recycled for memory, and the reaper says so once."""
    stuck_worker(tmp_path, sleeper)
    monkeypatch.setattr(procfs, "read_uss_bytes", lambda pid: None)
    events: list[Event] = []
    config = reaper_config(tmp_path, limit_mb=1 / 1024)
    # The stuck worker's request is an hour old: a day's deadline leaves it to the memory rule.
    config = replace(config, deadline=replace(config.deadline, default_s=86400.0))
    reaper = Reaper(config, emit=events.append)

    scan_in_a_thread(reaper)
    reaper.close()

    unreadable = [e for e in events if e["event"] == "memory_unreadable"]
    assert len(unreadable) == 1, events
    assert unreadable[0]["pid"] == sleeper.pid
    assert not [e for e in events if e["event"] == "recycle"]
