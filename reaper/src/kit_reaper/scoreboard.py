"""The scoreboard: one fixed-slot memory-mapped file per gunicorn instance, on tmpfs.

Layout (little-endian):

    header  HEADER_SIZE bytes  magic, version, geometry, arbiter pid and start time, instance
    slots   groups x slots_per_group x SLOT_SIZE bytes

A *group* belongs to one worker process; it has one slot per thread (gthread) or one slot
for a sync worker. Each slot holds pid, process start time (clock ticks since boot, field 22
of /proc/PID/stat), state (empty, idle, busy), request start (``time.monotonic()``:
CLOCK_MONOTONIC, which is one clock for every process on a Linux host), method, path and
request id (truncated to their fields).

Every slot starts with a sequence number used as a seqlock. A slot has one writer at a time
(the worker that owns its group, or the arbiter once that worker is gone), which makes the
sequence odd, stores the fields, and makes it even again: three stores into the shared
mapping, no syscall, no lock. A reader reads the sequence, the fields, and the sequence
again, and retries when the first was odd or the two differ (a torn read).

The sequence number is loaded and stored through a ``memoryview`` cast to ``Q``: one aligned
8-byte load or store, which no other process can see half done. ``struct.pack_into`` would
not do: it zeroes the field and then writes it a byte at a time, so a reader could see 0
(even) at both ends of a write and accept the half-written fields between.
"""

from __future__ import annotations

import enum
import errno
import mmap
import os
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"KITREAP1"
VERSION = 1
SUFFIX = ".scoreboard"

# magic, version, header size, slot size, groups, slots per group, arbiter pid,
# arbiter start ticks, instance name.
_HEADER = struct.Struct("<8sIIIIIiQ64s")
HEADER_SIZE = 256

SEQ_BYTES = 8
# pid, state, (3 pad bytes), start ticks, request start, method, request id, path.
_BODY = struct.Struct("<iB3xQd8s64s256s")
SLOT_SIZE = 384

METHOD_BYTES = 8
REQUEST_ID_BYTES = 64
PATH_BYTES = 256

READ_RETRIES = 100

assert _HEADER.size <= HEADER_SIZE
assert SEQ_BYTES + _BODY.size <= SLOT_SIZE
# Sequence words are aligned.
assert HEADER_SIZE % SEQ_BYTES == 0
assert SLOT_SIZE % SEQ_BYTES == 0


class ScoreboardError(ValueError):
    """A file in the scoreboard directory is not a scoreboard this version can read."""


class SlotState(enum.IntEnum):
    EMPTY = 0
    IDLE = 1
    BUSY = 2


@dataclass(frozen=True, slots=True)
class Header:
    instance: str
    arbiter_pid: int
    arbiter_start_ticks: int
    groups: int
    slots_per_group: int

    @property
    def slot_count(self) -> int:
        return self.groups * self.slots_per_group


@dataclass(frozen=True, slots=True)
class Slot:
    index: int
    seq: int
    pid: int
    state: SlotState
    start_ticks: int
    request_start: float
    method: str
    path: str
    request_id: str

    @property
    def busy(self) -> bool:
        return self.state is SlotState.BUSY


def file_size(groups: int, slots_per_group: int) -> int:
    return HEADER_SIZE + groups * slots_per_group * SLOT_SIZE


def file_name(instance: str, arbiter_pid: int) -> str:
    """`<instance>.<arbiter pid>.scoreboard`: two generations of one instance never collide."""
    return f"{instance}.{arbiter_pid}{SUFFIX}"


def instance_of(path: Path) -> str:
    """The instance part of a scoreboard file's name."""
    return path.name.removesuffix(SUFFIX).rpartition(".")[0]


def create(
    directory: Path,
    *,
    instance: str,
    arbiter_pid: int,
    arbiter_start_ticks: int,
    groups: int,
    slots_per_group: int,
) -> Path:
    """Write a fresh scoreboard (all slots empty) and rename it into place atomically."""
    if groups < 1 or slots_per_group < 1:
        raise ValueError(
            f"scoreboard geometry: expected groups >= 1 and slots_per_group >= 1, "
            f"found {groups} and {slots_per_group}"
        )
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / file_name(instance, arbiter_pid)
    header = bytearray(HEADER_SIZE)
    _HEADER.pack_into(
        header,
        0,
        MAGIC,
        VERSION,
        HEADER_SIZE,
        SLOT_SIZE,
        groups,
        slots_per_group,
        arbiter_pid,
        arbiter_start_ticks,
        instance.encode(),
    )
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(header)
            f.truncate(file_size(groups, slots_per_group))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def parse_header(buf: bytes | bytearray | mmap.mmap) -> Header:
    if len(buf) < HEADER_SIZE:
        raise ScoreboardError(f"expected a header of {HEADER_SIZE} bytes, found {len(buf)} bytes")
    magic, version, header_size, slot_size, groups, spg, pid, start, name = _HEADER.unpack_from(
        buf, 0
    )
    if magic != MAGIC:
        raise ScoreboardError(f"expected magic {MAGIC!r}, found {magic!r}")
    if (version, header_size, slot_size) != (VERSION, HEADER_SIZE, SLOT_SIZE):
        raise ScoreboardError(
            f"expected version {VERSION} with header {HEADER_SIZE} and slot {SLOT_SIZE} bytes, "
            f"found version {version} with header {header_size} and slot {slot_size} bytes"
        )
    if len(buf) < file_size(groups, spg):
        raise ScoreboardError(
            f"expected {file_size(groups, spg)} bytes for {groups}x{spg} slots, found {len(buf)}"
        )
    return Header(
        instance=name.rstrip(b"\0").decode(errors="replace"),
        arbiter_pid=pid,
        arbiter_start_ticks=start,
        groups=groups,
        slots_per_group=spg,
    )


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


_Body = tuple[int, int, int, float, bytes, bytes, bytes]


def decode_slot(index: int, seq_before: int, body: _Body, seq_after: int) -> Slot | None:
    """The slot read between two reads of its sequence number, or None if the read was torn:
    a writer was inside (odd sequence) or wrote in between (the two differ)."""
    if seq_before % 2 == 1 or seq_before != seq_after:
        return None
    pid, state, start_ticks, request_start, method, request_id, path = body
    try:
        slot_state = SlotState(state)
    except ValueError:
        return None
    return Slot(
        index=index,
        seq=seq_before,
        pid=pid,
        state=slot_state,
        start_ticks=start_ticks,
        request_start=request_start,
        method=_text(method),
        path=_text(path),
        request_id=_text(request_id),
    )


class Board:
    """A mapped scoreboard file. Writers (the gunicorn hooks) open it read-write; the reaper
    opens it read-only."""

    def __init__(self, path: Path, *, writable: bool = False, owner: int | None = None) -> None:
        """Map the file at `path`: a regular file (never a link, FIFO or directory, each opened
        without blocking), owned by `owner` when given; anything else is a ScoreboardError."""
        self.path = path
        flags = os.O_RDWR if writable else os.O_RDONLY
        try:
            fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except IsADirectoryError as e:
            raise ScoreboardError("a directory, not a scoreboard") from e
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ScoreboardError("a symbolic link, not a scoreboard") from e
            raise
        try:
            st = os.fstat(fd)
            self.inode = st.st_ino
            if not stat.S_ISREG(st.st_mode):
                raise ScoreboardError(
                    f"not a regular file (mode {stat.filemode(st.st_mode)}), not a scoreboard"
                )
            if owner is not None and st.st_uid != owner:
                raise ScoreboardError(f"owned by uid {st.st_uid}, expected uid {owner}")
            if st.st_size < HEADER_SIZE:
                raise ScoreboardError(
                    f"expected at least {HEADER_SIZE} bytes, found {st.st_size} bytes"
                )
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            self._map = mmap.mmap(fd, st.st_size, flags=mmap.MAP_SHARED, prot=prot)
        finally:
            os.close(fd)
        try:
            self.header = parse_header(self._map)
        except ScoreboardError:
            self._map.close()
            raise
        # The whole file as native 8-byte words (little-endian on every host the kit runs
        # on): element i is one aligned load or store, used for the sequence numbers only.
        self._words = memoryview(self._map)[
            : file_size(self.header.groups, self.header.slots_per_group)
        ].cast("Q")

    def close(self) -> None:
        self._words.release()
        self._map.close()

    @property
    def closed(self) -> bool:
        return self._map.closed

    def _offset(self, index: int) -> int:
        if not 0 <= index < self.header.slot_count:
            raise IndexError(f"slot {index} outside 0..{self.header.slot_count - 1}")
        return HEADER_SIZE + index * SLOT_SIZE

    # -- writer side: the request path -------------------------------------------------

    def write(
        self,
        index: int,
        *,
        pid: int,
        state: SlotState,
        start_ticks: int,
        request_start: float = 0.0,
        method: bytes = b"",
        path: bytes = b"",
        request_id: bytes = b"",
    ) -> None:
        """Store one slot under its seqlock. Only the slot's single writer calls this."""
        off = HEADER_SIZE + index * SLOT_SIZE
        word = off // SEQ_BYTES
        seq = self._words[word]
        # Odd while writing; a writer that died mid-write left it odd, so step past it.
        writing = seq + 1 if seq % 2 == 0 else seq + 2
        self._words[word] = writing
        _BODY.pack_into(
            self._map,
            off + SEQ_BYTES,
            pid,
            state,
            start_ticks,
            request_start,
            method,
            request_id,
            path,
        )
        self._words[word] = writing + 1

    # -- reader side -----------------------------------------------------------------

    def read_slot(self, index: int, retries: int = READ_RETRIES) -> Slot | None:
        """One consistent read of a slot, or None if every try was torn."""
        off = self._offset(index)
        word = off // SEQ_BYTES
        for _ in range(retries):
            before: int = self._words[word]
            if before % 2 == 1:
                continue
            body = _BODY.unpack_from(self._map, off + SEQ_BYTES)
            after: int = self._words[word]
            slot = decode_slot(index, before, body, after)
            if slot is not None:
                return slot
        return None

    def read_slots(self) -> list[Slot | None]:
        return [self.read_slot(i) for i in range(self.header.slot_count)]
