"""Reading processes from /proc: start time, parent, state, RSS and private memory (USS).

Each reader returns None when the process is gone (or the file cannot be read), so a worker
that exits between two reads is not an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_KIB = 1024


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    start_ticks: int


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/PID/stat. The command name (field 2) sits in parentheses and may itself
    hold spaces and parentheses, so the fields after it are found from the *last* ')'."""
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    pid = int(text[:open_paren])
    comm = text[open_paren + 1 : close_paren]
    rest = text[close_paren + 1 :].split()
    # rest[0] is field 3 (state), rest[1] field 4 (ppid), rest[19] field 22 (starttime).
    if len(rest) < 20:
        raise ValueError(f"/proc/{pid}/stat: expected at least 22 fields, found {len(rest) + 2}")
    return ProcStat(pid=pid, comm=comm, state=rest[0], ppid=int(rest[1]), start_ticks=int(rest[19]))


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    raw = _read(proc / str(pid) / "stat")
    if raw is None or not raw:
        return None
    return parse_stat(raw.decode(errors="replace"))


def self_start_ticks() -> int:
    stat = read_stat(os.getpid())
    assert stat is not None, "/proc/self/stat must be readable"
    return stat.start_ticks


def parse_vmrss_bytes(status: bytes) -> int | None:
    """VmRSS from /proc/PID/status, in bytes (None for kernel threads and zombies)."""
    start = status.find(b"\nVmRSS:")
    if start < 0:
        return None
    end = status.find(b"\n", start + 1)
    fields = status[start + 7 : end if end >= 0 else None].split()
    return int(fields[0]) * _KIB


def read_rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    raw = _read(proc / str(pid) / "status")
    return None if raw is None else parse_vmrss_bytes(raw)


def parse_private_bytes(smaps: bytes) -> int:
    """Private_Clean + Private_Dirty, summed over every mapping listed (one for
    smaps_rollup, all of them for smaps)."""
    total_kib = 0
    for line in smaps.splitlines():
        if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
            total_kib += int(line.split()[1])
    return total_kib * _KIB


def read_uss_bytes(pid: int, proc: Path = PROC, *, rollup: bool = True) -> int | None:
    """Private memory (USS) of a process: from smaps_rollup (Linux >= 4.14), falling back
    to the slower full smaps where the rollup file is missing."""
    base = proc / str(pid)
    if rollup:
        raw = _read(base / "smaps_rollup")
        if raw is not None:
            return parse_private_bytes(raw)
        if not (base / "smaps").exists():
            return None
    raw = _read(base / "smaps")
    return None if raw is None else parse_private_bytes(raw)
