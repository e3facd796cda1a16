"""The scoreboard file: layout, truncation, and the seqlock that detects torn reads."""

from __future__ import annotations

import multiprocessing
import struct
import time
from pathlib import Path

import pytest

from kit_reaper import scoreboard
from kit_reaper.scoreboard import HEADER_SIZE, SLOT_SIZE, Board, ScoreboardError, SlotState


def make_board(tmp_path: Path, groups: int = 2, slots_per_group: int = 3) -> Board:
    path = scoreboard.create(
        tmp_path,
        instance="8001",
        arbiter_pid=4242,
        arbiter_start_ticks=99,
        groups=groups,
        slots_per_group=slots_per_group,
    )
    return Board(path, writable=True)


def test_new_scoreboard_has_every_slot_empty(tmp_path: Path) -> None:
    board = make_board(tmp_path)

    assert board.path.name == "8001.4242.scoreboard"
    assert scoreboard.instance_of(board.path) == "8001"
    assert board.header == scoreboard.Header("8001", 4242, 99, 2, 3)
    slots = board.read_slots()
    assert len(slots) == 6
    assert all(s is not None and s.state is SlotState.EMPTY and s.pid == 0 for s in slots)


def test_slot_reads_back_what_was_written_truncated_to_its_fields(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    long_path = "/a" * 500

    board.write(
        4,
        pid=77,
        state=SlotState.BUSY,
        start_ticks=12345,
        request_start=3.5,
        method=b"OPTIONSX-LONG",
        path=long_path.encode(),
        request_id=b"r" * 100,
    )

    got = Board(board.path).read_slot(4)  # read through a second, read-only mapping
    assert got is not None
    assert (got.pid, got.state, got.start_ticks, got.request_start) == (
        77,
        SlotState.BUSY,
        12345,
        3.5,
    )
    assert got.method == "OPTIONSX"
    assert got.path == long_path[: scoreboard.PATH_BYTES]
    assert got.request_id == "r" * scoreboard.REQUEST_ID_BYTES
    assert got.seq == 2  # one write: odd while writing, even after


def test_decode_slot_rejects_a_read_torn_by_a_writer() -> None:
    body = (7, int(SlotState.BUSY), 1, 1.0, b"GET", b"rid", b"/p")

    assert scoreboard.decode_slot(0, 4, body, 4) is not None
    assert scoreboard.decode_slot(0, 5, body, 5) is None  # a writer was inside
    assert scoreboard.decode_slot(0, 4, body, 6) is None  # a write happened in between


def test_slot_left_odd_by_a_dead_writer_reads_as_torn_until_rewritten(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    board.write(0, pid=77, state=SlotState.IDLE, start_ticks=1)
    with open(board.path, "r+b") as f:  # a writer killed between its first and last store
        f.seek(HEADER_SIZE)
        f.write(struct.pack("<Q", 3))

    assert board.read_slot(0) is None
    board.write(0, pid=78, state=SlotState.IDLE, start_ticks=1)
    got = board.read_slot(0)
    assert got is not None
    assert got.pid == 78
    assert got.seq % 2 == 0


def _hammer(path: str, seconds: float) -> None:
    """Write records whose fields all carry the same counter, as fast as possible."""
    board = Board(Path(path), writable=True)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        text = str(n).encode()
        board.write(
            0,
            pid=n,
            state=SlotState.BUSY,
            start_ticks=n,
            request_start=float(n),
            method=text[-8:],
            path=b"/" + text * 30,
            request_id=text,
        )


def test_reader_never_returns_a_mix_of_two_writes(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    writer = multiprocessing.get_context("fork").Process(
        target=_hammer, args=(str(board.path), 1.0)
    )
    writer.start()
    reader = Board(board.path)
    consistent = 0
    while writer.is_alive() or consistent == 0:
        got = reader.read_slot(0)
        if got is None or got.pid == 0:
            continue
        n = got.pid
        text = str(n)
        assert (got.start_ticks, got.request_start, got.request_id) == (n, float(n), text)
        assert got.path == ("/" + text * 30)[: scoreboard.PATH_BYTES]
        consistent += 1
    writer.join()
    assert writer.exitcode == 0
    assert consistent > 100


def test_file_that_is_not_a_scoreboard_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.1.scoreboard"
    path.write_bytes(b"\0" * (HEADER_SIZE + SLOT_SIZE))

    with pytest.raises(ScoreboardError, match=r"expected magic b'KITREAP1', found b'\\x00"):
        Board(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.1.scoreboard"
    path.touch()

    with pytest.raises(ScoreboardError, match="expected at least 256 bytes, found 0 bytes"):
        Board(path)


def test_truncated_scoreboard_is_refused(tmp_path: Path) -> None:
    board = make_board(tmp_path, groups=4, slots_per_group=1)
    board.close()
    with open(board.path, "r+b") as f:
        f.truncate(HEADER_SIZE + SLOT_SIZE)

    with pytest.raises(ScoreboardError, match=r"expected \d+ bytes for 4x1 slots, found"):
        Board(board.path)
