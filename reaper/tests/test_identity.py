"""A slot whose pid is now another process is never signalled: real processes, a scoreboard
written by hand (no gunicorn), and the reaper scanning it for real (not dry-run)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    alive,
    board_claiming,
    reaper_config,
    scan_in_a_thread,
    start_ticks,
    stuck_worker,
    wait_for,
)

from kit_reaper import procfs, scoreboard
from kit_reaper.reaper import Event, Reaper


def scan_a_while(directory: Path) -> list[Event]:
    """Ten real scans, deadlines and memory (a 1 KiB limit every process is over)."""
    events: list[Event] = []
    reaper = Reaper(reaper_config(directory, limit_mb=1 / 1024), emit=events.append)
    scan_in_a_thread(reaper)
    reaper.close()
    return events


def test_slot_whose_pid_was_reused_is_never_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # This test process is the arbiter and the sleeper its child, but the slot's worker
    # started at another time: the pid has been given to a new process since.
    board_claiming(
        tmp_path,
        arbiter_pid=os.getpid(),
        pid=sleeper.pid,
        slot_start_ticks=start_ticks(sleeper.pid) - 1,
    )

    events = scan_a_while(tmp_path)

    assert alive(sleeper.pid)
    assert [e["event"] for e in events] == ["skip"]
    assert events[0]["pid"] == sleeper.pid
    assert "pid reused" in str(events[0]["reason"])


def test_process_that_is_not_a_child_of_the_arbiter_is_never_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # The slot's pid and start time are right, but the 'arbiter' is another process.
    with subprocess.Popen(["sleep", "60"]) as other_arbiter:
        try:
            board_claiming(
                tmp_path,
                arbiter_pid=other_arbiter.pid,
                pid=sleeper.pid,
                slot_start_ticks=start_ticks(sleeper.pid),
            )

            events = scan_a_while(tmp_path)
        finally:
            other_arbiter.kill()

    assert alive(sleeper.pid)
    assert [e["event"] for e in events] == ["skip"]
    assert f"expected parent {other_arbiter.pid}" in str(events[0]["reason"])


def test_child_of_the_arbiter_with_the_slots_start_time_is_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # The same forged board, with everything matching: the reaper does act (so the two
    # tests above would see a signal if identity were not checked).
    board_claiming(
        tmp_path,
        arbiter_pid=os.getpid(),
        pid=sleeper.pid,
        slot_start_ticks=start_ticks(sleeper.pid),
    )

    events = scan_a_while(tmp_path)

    assert sleeper.wait(10) == -6  # SIGABRT
    assert events[0]["event"] == "kill"
    assert events[0]["request_id"] == "forged"


def test_scoreboard_of_a_dead_arbiter_is_ignored(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    with subprocess.Popen(["sleep", "60"]) as arbiter:
        board_claiming(
            tmp_path,
            arbiter_pid=arbiter.pid,
            pid=sleeper.pid,
            slot_start_ticks=start_ticks(sleeper.pid),
        )
        arbiter.kill()
    wait_for("the arbiter to be gone", lambda: procfs.read_stat(arbiter.pid) is None)

    events = scan_a_while(tmp_path)

    assert alive(sleeper.pid)
    assert [e["event"] for e in events] == ["stale_scoreboard"]


def test_file_that_is_not_a_scoreboard_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "junk.1.scoreboard").write_bytes(b"not a scoreboard" * 100)

    events = scan_a_while(tmp_path)

    assert [e["event"] for e in events] == ["bad_scoreboard"]
    assert "expected magic" in str(events[0]["error"])


ODD_ENTRIES: dict[str, Callable[[Path], object]] = {
    "directory": Path.mkdir,
    "fifo": os.mkfifo,
    "symlink": lambda path: path.symlink_to("/dev/zero"),
}


@pytest.mark.parametrize("kind", sorted(ODD_ENTRIES))
def test_an_odd_entry_is_reported_once_and_the_other_boards_still_enforced(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], kind: str
) -> None:
    ODD_ENTRIES[kind](tmp_path / f"odd.1{scoreboard.SUFFIX}")
    stuck_worker(tmp_path, sleeper)
    events: list[Event] = []
    reaper = Reaper(reaper_config(tmp_path), emit=events.append)

    scan_in_a_thread(reaper)
    reaper.close()

    bad = [e for e in events if e["event"] == "bad_scoreboard"]
    assert [e["file"] for e in bad] == [str(tmp_path / f"odd.1{scoreboard.SUFFIX}")], events
    wait_for("the stuck worker to be killed", lambda: not alive(sleeper.pid))


def test_a_board_of_another_user_is_never_acted_on(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    stuck_worker(tmp_path, sleeper)
    other = os.geteuid() + 1
    events: list[Event] = []
    reaper = Reaper(reaper_config(tmp_path), emit=events.append, owner=other)

    scan_in_a_thread(reaper)
    reaper.close()

    assert alive(sleeper.pid)
    assert len(events) == 1, events
    assert f"expected uid {other}" in str(events[0]["error"])


def test_a_directory_others_may_write_in_is_not_read_until_it_is_safe(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    stuck_worker(tmp_path, sleeper)
    tmp_path.chmod(0o777)
    events: list[Event] = []
    reaper = Reaper(reaper_config(tmp_path), emit=events.append)

    scan_in_a_thread(reaper)
    assert alive(sleeper.pid)
    assert [e["event"] for e in events] == ["unsafe_scoreboard_dir"]
    assert "writable by others" in str(events[0]["error"])

    tmp_path.chmod(0o755)
    scan_in_a_thread(reaper)
    reaper.close()
    wait_for("the stuck worker to be killed", lambda: not alive(sleeper.pid))
