"""The reaper loop: read every scoreboard, apply the policy, signal, log, count.

One scan:

1. Follow up on workers already signalled: SIGKILL those still alive past their grace
   (deadline kills) or drain deadline (memory recycles); forget those that exited.
2. For each scoreboard whose arbiter is alive (pid and start time as recorded), group the
   slots by worker and check each worker's identity in /proc: same start time as its slot,
   parent is the arbiter. A pid now held by another process is skipped, never signalled.
3. Deadlines: a busy slot past its deadline -> re-check identity through a pidfd, re-read
   the slot (still the same request?), log the evidence, SIGABRT.
4. Memory: VmRSS (cheap) as a prefilter, USS from smaps_rollup for workers over the limit.
   N samples in a row over the limit -> SIGTERM, at most `recycle_budget` workers of one
   instance at a time, largest first.

Every action is one JSON line (see `json_emitter`). In dry-run the same lines are written,
once per request or worker, with "dry_run": true, and nothing is signalled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from kit_reaper import procfs, scoreboard
from kit_reaper.config import Config
from kit_reaper.metrics import Metrics
from kit_reaper.policy import (
    PROCESS_GONE,
    Escalation,
    MemorySampler,
    Reason,
    Step,
    identity_mismatch,
    overdue,
    same_request,
    within_budget,
)
from kit_reaper.scoreboard import Board, ScoreboardError, Slot
from kit_reaper.signals import ProcessHandle

Event = dict[str, object]
Emit = Callable[[Event], None]

_FIRST_SIGNAL = {Reason.DEADLINE: signal.SIGABRT, Reason.MEMORY: signal.SIGTERM}
_KILL_REASON = {Reason.DEADLINE: "abort_grace_expired", Reason.MEMORY: "drain_expired"}
STACK_TIMEOUT_S = 5.0


def find_py_spy() -> str | None:
    """py-spy beside the reaper's own interpreter (the release's venv, whose wheelhouse
    ships it), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


@dataclass
class _Dump:
    """A worker past its deadline whose stacks py-spy is reading, in a thread of its own:
    the worker is signalled once the dump ends (or times out), and the scans go on."""

    board: Board
    worker: Worker
    slot: Slot
    deadline_s: float
    handle: ProcessHandle
    private_bytes: int | None
    stack: Future[str | None]


def json_emitter(stream: TextIO = sys.stderr) -> Emit:
    """One JSON object per line, with a UTC timestamp, flushed (journald reads stderr)."""

    def emit(event: Event) -> None:
        line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **event}
        stream.write(json.dumps(line, default=str) + "\n")
        stream.flush()

    return emit


@dataclass(frozen=True, slots=True)
class WorkerKey:
    board: Path
    pid: int
    start_ticks: int


@dataclass
class Worker:
    key: WorkerKey
    instance: str
    arbiter_pid: int
    slots: list[Slot]

    @property
    def busy(self) -> bool:
        return any(slot.busy for slot in self.slots)


@dataclass
class Signalled:
    """A worker the reaper has signalled and follows until it exits."""

    worker: Worker
    handle: ProcessHandle
    escalation: Escalation


class _Reported:
    """What was already said about a subject (a worker or a scoreboard file), so that
    dry-run and skips say it once; forgotten when the subject is no longer seen."""

    def __init__(self) -> None:
        self._said: dict[Hashable, set[Hashable]] = {}
        self.seen: set[Hashable] = set()  # subjects seen during the current scan

    def first(self, subject: Hashable, what: Hashable) -> bool:
        said = self._said.setdefault(subject, set())
        if what in said:
            return False
        said.add(what)
        return True

    def end_scan(self) -> None:
        self._said = {k: v for k, v in self._said.items() if k in self.seen}
        self.seen = set()


def _request(slot: Slot, now: float) -> Event:
    return {
        "method": slot.method,
        "path": slot.path,
        "request_id": slot.request_id or None,
        "age_s": round(now - slot.request_start, 3),
    }


class Reaper:
    def __init__(
        self,
        config: Config,
        *,
        emit: Emit | None = None,
        metrics: Metrics | None = None,
        owner: int | None = None,
        heartbeat: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        # Called after every completed scan (systemd's watchdog, in the CLI).
        self.heartbeat = heartbeat
        # The user whose scoreboards these are: the reaper runs as the application's user,
        # which its gunicorn instances run as too.
        self.owner = os.geteuid() if owner is None else owner
        self.emit = emit if emit is not None else json_emitter()
        self.metrics = metrics if metrics is not None else Metrics()
        self.deadlines = config.deadline.deadlines()
        self.sampler: MemorySampler[WorkerKey] = MemorySampler(config.memory.samples)
        self.signalled: dict[WorkerKey, Signalled] = {}
        self._boards: dict[Path, Board] = {}
        self._reported = _Reported()
        self._uss_due = 0.0
        self.scans = 0
        self._py_spy = find_py_spy() if config.stacks else None
        self._dumps: dict[WorkerKey, _Dump] = {}
        self._dumper: ThreadPoolExecutor | None = None

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.emit(
            {
                "event": "started",
                "dry_run": self.config.dry_run,
                "scoreboard_dir": str(self.config.scoreboard_dir),
            }
        )
        while not stop.is_set():
            began = time.monotonic()
            try:
                self.scan()
            except Exception as e:  # a watchdog keeps watching; the error is logged
                self.emit({"event": "scan_failed", "error": repr(e)})
            else:
                # Only a completed scan proves the reaper works: one that hangs or fails
                # every time stops the heartbeat, and systemd's watchdog restarts it.
                if self.heartbeat is not None:
                    self.heartbeat()
            stop.wait(max(0.0, self.config.scan_interval_s - (time.monotonic() - began)))
        self.close()
        self.emit({"event": "stopped"})

    def close(self) -> None:
        for dump in self._dumps.values():
            dump.handle.close()
        self._dumps.clear()
        if self._dumper is not None:
            self._dumper.shutdown(wait=False, cancel_futures=True)
            self._dumper = None
        for board in self._boards.values():
            board.close()
        self._boards.clear()
        for tracked in self.signalled.values():
            tracked.handle.close()
        self.signalled.clear()

    def scan(self) -> None:
        began = time.perf_counter()
        now = time.monotonic()
        self._follow_up(now)
        self._finish_dumps(now)
        sample_all_uss = self.config.metrics.port is not None and now >= self._uss_due
        if sample_all_uss:
            self._uss_due = now + self.config.metrics.uss_interval_s
        instances: set[str] = set()
        live: set[WorkerKey] = set()
        series: set[tuple[str, int]] = set()
        for board in self._scoreboards():
            try:
                workers = self._workers(board)
                if workers is None:
                    continue
                instance = board.header.instance
                instances.add(instance)
                live.update(w.key for w in workers)
                series.update((instance, w.key.pid) for w in workers)
                busy = sum(1 for w in workers if w.busy)
                self.metrics.set_workers(instance, busy, len(workers) - busy)
                self._deadlines(board, workers, now)
                if self.config.memory.enabled:
                    self._memory(board, workers, sample_all_uss)
            except Exception as e:  # one board's failure never stops the others' enforcement
                if self._reported.first(board.path, ("failed", board.inode, repr(e))):
                    self.emit({"event": "scoreboard_failed", "file": str(board.path),
                               "error": repr(e)})  # fmt: skip
        self.sampler.retain(live)
        self._reported.end_scan()
        self.metrics.retain(instances, series)
        self.metrics.scan_seconds.set(time.perf_counter() - began)
        self.metrics.last_scan.set_to_current_time()
        self.scans += 1

    # -- scoreboards -----------------------------------------------------------------

    def _directory_is_safe(self, directory: Path) -> bool:
        """The directory belongs to the application's user (or root) and nobody else may
        write in it: otherwise another user could plant a board that names any process."""
        try:
            st = directory.lstat()
        except FileNotFoundError:
            return True  # no instance has started yet: nothing to read
        problem = None
        if not stat.S_ISDIR(st.st_mode):
            problem = f"not a directory (mode {stat.filemode(st.st_mode)})"
        elif st.st_uid not in (self.owner, 0):
            problem = f"owned by uid {st.st_uid}, expected uid {self.owner} or root"
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = f"writable by others (mode {stat.filemode(st.st_mode)})"
        if problem is None:
            return True
        self._reported.seen.add(directory)
        if self._reported.first(directory, ("unsafe", st.st_ino, problem)):
            self.emit({"event": "unsafe_scoreboard_dir", "dir": str(directory), "error": problem})
        return False

    def _scoreboards(self) -> Iterator[Board]:
        """Every scoreboard file in the directory, mapped once and re-mapped if replaced. An
        entry that is not a readable board (a directory, a FIFO, another user's file, a
        truncated file) is reported once and skipped: the others are still enforced."""
        directory = self.config.scoreboard_dir
        if not self._directory_is_safe(directory):
            paths = []
        else:
            try:
                paths = sorted(directory.glob(f"*{scoreboard.SUFFIX}"))
            except OSError:
                paths = []
        paths = [p for p in paths if not p.name.startswith(".")]
        for gone in set(self._boards) - set(paths):
            self._boards.pop(gone).close()
        self._reported.seen.update(paths)
        for path in paths:
            board = self._boards.get(path)
            inode = 0
            try:
                inode = path.lstat().st_ino
                if board is None or board.inode != inode:
                    if board is not None:
                        self._boards.pop(path).close()
                    board = self._boards[path] = Board(path, owner=self.owner)
            except FileNotFoundError:
                self._boards.pop(path, None)
                continue
            except (ScoreboardError, OSError, ValueError) as e:
                if self._reported.first(path, ("bad", inode, str(e))):
                    self.emit({"event": "bad_scoreboard", "file": str(path), "error": str(e)})
                continue
            yield board

    def _workers(self, board: Board) -> list[Worker] | None:
        """The board's workers whose identity holds, or None if its arbiter is gone."""
        header = board.header
        arbiter = procfs.read_stat(header.arbiter_pid)
        if arbiter is None or arbiter.start_ticks != header.arbiter_start_ticks:
            if self._reported.first(board.path, ("stale", board.inode)):
                self.emit(
                    {
                        "event": "stale_scoreboard",
                        "file": str(board.path),
                        "arbiter_pid": header.arbiter_pid,
                    }
                )
            return None
        by_process: dict[tuple[int, int], list[Slot]] = {}
        for slot in board.read_slots():
            if slot is not None and slot.pid > 0:
                by_process.setdefault((slot.pid, slot.start_ticks), []).append(slot)
        workers = []
        for (pid, start_ticks), slots in by_process.items():
            key = WorkerKey(board.path, pid, start_ticks)
            self._reported.seen.add(key)
            mismatch = identity_mismatch(
                pid=pid,
                start_ticks=start_ticks,
                arbiter_pid=header.arbiter_pid,
                found=procfs.read_stat(pid),
            )
            if mismatch is not None:
                if mismatch != PROCESS_GONE and self._reported.first(key, "skip"):
                    self.emit(
                        {
                            "event": "skip",
                            "instance": header.instance,
                            "pid": pid,
                            "reason": mismatch,
                        }
                    )
                continue
            workers.append(Worker(key, header.instance, header.arbiter_pid, slots))
        return workers

    # -- deadlines -------------------------------------------------------------------

    def _deadlines(self, board: Board, workers: list[Worker], now: float) -> None:
        for worker in workers:
            if worker.key in self.signalled or worker.key in self._dumps:
                continue
            late = overdue(worker.slots, self.deadlines, now)
            if late:
                self._kill_for_deadline(board, worker, late[0].slot, late[0].deadline_s, now)

    def _kill_for_deadline(
        self, board: Board, worker: Worker, slot: Slot, deadline_s: float, now: float
    ) -> None:
        if self.config.dry_run and not self._reported.first(worker.key, ("deadline", slot.seq)):
            return
        handle = self._open_verified(worker)
        if handle is None:
            return
        uss = procfs.read_uss_bytes(worker.key.pid)
        if self._py_spy is not None:
            # Its stacks first, while it is still stuck; read in a thread, so this scan and
            # the next go on, and signalled by _finish_dumps once the dump is done.
            if self._dumper is None:
                self._dumper = ThreadPoolExecutor(2, thread_name_prefix="kit-reaper-py-spy")
            stack = self._dumper.submit(self._stack, worker.key.pid)
            self._dumps[worker.key] = _Dump(board, worker, slot, deadline_s, handle, uss, stack)
            return
        self._signal_overdue(board, worker, slot, deadline_s, handle, uss, None, now)

    def dumping(self) -> set[int]:
        """The pids whose stacks py-spy is reading."""
        return {key.pid for key in list(self._dumps)}

    def _finish_dumps(self, now: float) -> None:
        for key, dump in list(self._dumps.items()):
            if not dump.stack.done():
                continue  # py-spy has its own timeout (STACK_TIMEOUT_S)
            del self._dumps[key]
            stack = dump.stack.result()
            if dump.board.closed:  # its instance stopped meanwhile
                dump.handle.close()
                continue
            self._signal_overdue(
                dump.board, dump.worker, dump.slot, dump.deadline_s, dump.handle,
                dump.private_bytes, stack, now,
            )  # fmt: skip

    def _signal_overdue(
        self,
        board: Board,
        worker: Worker,
        slot: Slot,
        deadline_s: float,
        handle: ProcessHandle,
        uss: int | None,
        stack: str | None,
        now: float,
    ) -> None:
        # Re-read the slot last: the request may have finished while we looked.
        if not same_request(slot, board.read_slot(slot.index)):
            handle.close()
            return
        others = [_request(s, now) for s in worker.slots if s.busy and s.index != slot.index]
        self._act(
            worker,
            handle,
            Reason.DEADLINE,
            {
                **_request(slot, now),
                "deadline_s": deadline_s,
                "private_bytes": uss,
                "other_requests": others,
                "stack": stack,
            },
            now,
        )

    # -- memory ----------------------------------------------------------------------

    def _memory(self, board: Board, workers: list[Worker], sample_all_uss: bool) -> None:
        limit = self.config.memory.limit_bytes
        candidates: list[tuple[int, Worker]] = []
        for worker in workers:
            pid = worker.key.pid
            rss = procfs.read_rss_bytes(pid)
            if rss is None:
                continue
            # USS <= RSS: under the limit by RSS means under it by USS, no smaps needed.
            wanted = rss > limit or sample_all_uss
            uss = procfs.read_uss_bytes(pid) if wanted else None
            if uss is not None:
                self.metrics.set_private(worker.instance, pid, uss)
            elif (
                wanted
                and procfs.read_stat(pid) is not None
                and self._reported.first(worker.key, "uss_unreadable")
            ):
                # Alive, yet its private memory cannot be read: it can never be recycled,
                # and that is said once rather than silently not done.
                self.emit(
                    {
                        "event": "memory_unreadable",
                        "instance": worker.instance,
                        "pid": pid,
                        "rss_bytes": rss,
                        "error": f"cannot read /proc/{pid}/smaps_rollup or smaps",
                    }
                )
            over = uss is not None and uss > limit
            if (
                self.sampler.observe(worker.key, over)
                and worker.key not in self.signalled
                and (worker.busy or self.config.memory.recycle_idle)
            ):
                assert uss is not None
                candidates.append((uss, worker))
        if not candidates:
            return
        candidates.sort(key=lambda c: c[0], reverse=True)
        in_flight = sum(
            1
            for s in self.signalled.values()
            if s.worker.key.board == board.path and s.escalation.reason is Reason.MEMORY
        )
        budget = self.config.memory.recycle_budget
        chosen = candidates if self.config.dry_run else within_budget(candidates, budget, in_flight)
        for uss, worker in chosen:
            if self.config.dry_run and not self._reported.first(worker.key, "memory"):
                continue
            handle = self._open_verified(worker)
            if handle is None:
                continue
            now = time.monotonic()
            busy = [_request(s, now) for s in worker.slots if s.busy]
            self._act(
                worker,
                handle,
                Reason.MEMORY,
                {
                    "private_bytes": uss,
                    "limit_bytes": self.config.memory.limit_bytes,
                    "samples": self.sampler.streak(worker.key),
                    "in_flight_recycles": in_flight,
                    "recycle_budget": budget,
                    "other_requests": busy,
                },
                now,
                grace=self._drain_for(worker, now),
            )
            in_flight += 1

    # -- signalling ------------------------------------------------------------------

    def _open_verified(self, worker: Worker) -> ProcessHandle | None:
        """A handle on the worker, opened before its identity is checked once more."""
        key = worker.key
        handle = ProcessHandle.open(key.pid, key.start_ticks)
        if handle is None:
            return None
        mismatch = identity_mismatch(
            pid=key.pid,
            start_ticks=key.start_ticks,
            arbiter_pid=worker.arbiter_pid,
            found=procfs.read_stat(key.pid),
        )
        if mismatch is not None:
            handle.close()
            if mismatch != PROCESS_GONE:
                self.emit(
                    {
                        "event": "skip",
                        "instance": worker.instance,
                        "pid": key.pid,
                        "reason": mismatch,
                    }
                )
            return None
        return handle

    def _drain_for(self, worker: Worker, now: float) -> float:
        """How long a recycled worker may take to exit before SIGKILL: the drain time, or
        longer where a request in flight still has more of its deadline left (a recycle for
        memory never cuts a request the deadline policy allows). Past its deadline, the
        deadline rule kills it anyway."""
        remaining = [
            self.deadlines.for_request(slot.method, slot.path) - (now - slot.request_start)
            for slot in worker.slots
            if slot.busy
        ]
        return round(max([self.config.memory.drain_s, *remaining]), 3)

    def _act(
        self,
        worker: Worker,
        handle: ProcessHandle,
        reason: Reason,
        evidence: Event,
        now: float,
        grace: float | None = None,
    ) -> None:
        sig = _FIRST_SIGNAL[reason]
        if grace is None:
            grace = (
                self.config.deadline.abort_grace_s
                if reason is Reason.DEADLINE
                else self.config.memory.drain_s
            )
        self.emit(
            {
                "event": "kill" if reason is Reason.DEADLINE else "recycle",
                "reason": reason.value,
                "signal": sig.name,
                "dry_run": self.config.dry_run,
                "instance": worker.instance,
                "pid": worker.key.pid,
                **evidence,
                "sigkill_after_s": grace,
            }
        )
        if self.config.dry_run:
            handle.close()
            return
        try:
            sent = handle.send(sig)
        except PermissionError as e:  # the reaper runs as neither root nor the app's user
            sent = False
            self.emit(
                {
                    "event": "signal_failed",
                    "instance": worker.instance,
                    "pid": worker.key.pid,
                    "signal": sig.name,
                    "error": str(e),
                }
            )
        if not sent:
            handle.close()
            return
        if reason is Reason.DEADLINE:
            self.metrics.kills.labels(worker.instance, reason.value).inc()
        else:
            self.metrics.recycles.labels(worker.instance, reason.value).inc()
        self.signalled[worker.key] = Signalled(worker, handle, Escalation(reason, grace, now))

    def _follow_up(self, now: float) -> None:
        for key, tracked in list(self.signalled.items()):
            escalation = tracked.escalation
            step = escalation.step(now, alive=not tracked.handle.exited())
            if step is Step.DONE:
                tracked.handle.close()
                del self.signalled[key]
                self.emit(
                    {
                        "event": "exited",
                        "reason": escalation.reason.value,
                        "instance": tracked.worker.instance,
                        "pid": key.pid,
                        "after_s": round(now - escalation.signalled_at, 3),
                    }
                )
            elif step is Step.KILL:
                why = _KILL_REASON[escalation.reason]
                self.emit(
                    {
                        "event": "kill",
                        "reason": why,
                        "signal": "SIGKILL",
                        "dry_run": False,
                        "instance": tracked.worker.instance,
                        "pid": key.pid,
                        "after_s": round(now - escalation.signalled_at, 3),
                    }
                )
                if tracked.handle.send(signal.SIGKILL):
                    self.metrics.kills.labels(tracked.worker.instance, why).inc()
                escalation.killed(now)

    def _stack(self, pid: int) -> str | None:
        """The worker's Python stacks from `py-spy dump`, if py-spy is installed."""
        if self._py_spy is None:
            return None
        try:
            done = subprocess.run(
                [self._py_spy, "dump", "--pid", str(pid)],
                capture_output=True,
                text=True,
                timeout=STACK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None
