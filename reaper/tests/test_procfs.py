"""Reading /proc: stat fields past an awkward command name, RSS, and USS with its fallback."""

from __future__ import annotations

import os
from pathlib import Path

from kit_reaper import procfs

SMAPS = b"""\
55d0c0000000-55d0c0021000 r--p 00000000 08:01 1 /usr/bin/python3
Rss:                 132 kB
Pss:                  40 kB
Shared_Clean:        100 kB
Private_Clean:        12 kB
Private_Dirty:        20 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Rss:                1024 kB
Private_Clean:         0 kB
Private_Dirty:      1000 kB
"""

ROLLUP = b"""\
55d0c0000000-7ffd1c9b7000 ---p 00000000 00:00 0                          [rollup]
Rss:                1156 kB
Private_Clean:        12 kB
Private_Dirty:      1020 kB
"""


def test_stat_fields_are_found_after_a_command_name_with_spaces_and_parens() -> None:
    fields = " ".join(str(i) for i in range(3, 53)).split()
    fields[0], fields[1], fields[19] = "S", "4321", "987654"  # state, ppid, starttime
    text = "1234 (gunicorn: worker) [app] (x)) " + " ".join(fields) + "\n"

    stat = procfs.parse_stat(text)

    assert stat == procfs.ProcStat(1234, "gunicorn: worker) [app] (x)", "S", 4321, 987654)


def test_stat_of_this_process_names_its_parent() -> None:
    stat = procfs.read_stat(os.getpid())

    assert stat is not None
    assert stat.ppid == os.getppid()
    assert stat.start_ticks == procfs.self_start_ticks()


def test_gone_process_reads_as_none() -> None:
    assert procfs.read_stat(2**22 + 1) is None  # above pid_max's ceiling
    assert procfs.read_rss_bytes(2**22 + 1) is None
    assert procfs.read_uss_bytes(2**22 + 1) is None


def test_rss_of_this_process_is_read_from_status() -> None:
    rss = procfs.read_rss_bytes(os.getpid())
    assert rss is not None
    assert rss > 1 << 20
    assert procfs.parse_vmrss_bytes(b"Name:\tx\nVmRSS:\t   2048 kB\nRssAnon:\t1 kB\n") == 2 << 20
    assert procfs.parse_vmrss_bytes(b"Name:\tkthreadd\nState:\tS\n") is None


def test_uss_is_private_clean_plus_private_dirty(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "smaps_rollup").write_bytes(ROLLUP)
    (tmp_path / "7" / "smaps").write_bytes(SMAPS)

    assert procfs.read_uss_bytes(7, tmp_path) == (12 + 1020) * 1024
    assert procfs.read_uss_bytes(7, tmp_path, rollup=False) == (12 + 20 + 1000) * 1024


def test_uss_falls_back_to_smaps_without_smaps_rollup(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "smaps").write_bytes(SMAPS)

    assert procfs.read_uss_bytes(7, tmp_path) == (12 + 20 + 1000) * 1024


def test_uss_of_this_process_is_below_its_rss() -> None:
    uss = procfs.read_uss_bytes(os.getpid())
    rss = procfs.read_rss_bytes(os.getpid())
    assert uss is not None
    assert rss is not None
    assert 0 < uss <= rss
