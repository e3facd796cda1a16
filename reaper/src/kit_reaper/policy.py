"""What the reaper decides, as pure code: no /proc, no signals, no clock of its own.

- which deadline a request has (method, or the longest matching path prefix);
- which busy slots are past their deadline (idle slots never are);
- whether a worker's private memory has been over the limit for N samples in a row;
- how many workers of an instance may start recycling now (the budget);
- whether a slot's pid still is the worker the slot describes (identity);
- the escalation of one signalled worker: first signal, then SIGKILL after a grace period.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kit_reaper.procfs import ProcStat
from kit_reaper.scoreboard import Slot

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


# -- deadlines -------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadlines:
    """Request deadlines in seconds: a path-prefix override (longest prefix wins) beats a
    per-method deadline, which beats the default."""

    default_s: float
    methods: Mapping[str, float] = field(default_factory=dict)
    paths: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        upper = {method.upper(): seconds for method, seconds in self.methods.items()}
        object.__setattr__(self, "methods", upper)
        by_length = dict(sorted(self.paths.items(), key=lambda item: len(item[0]), reverse=True))
        object.__setattr__(self, "paths", by_length)

    def for_request(self, method: str, path: str) -> float:
        for prefix, seconds in self.paths.items():  # longest first
            if path.startswith(prefix):
                return seconds
        return self.methods.get(method.upper(), self.default_s)


@dataclass(frozen=True, slots=True)
class Overdue:
    slot: Slot
    age_s: float
    deadline_s: float


def overdue(slots: Iterable[Slot], deadlines: Deadlines, now: float) -> list[Overdue]:
    """Busy slots whose request is older than its deadline, oldest first. `now` is on the
    clock the slots' request starts are on (CLOCK_MONOTONIC)."""
    found = []
    for slot in slots:
        if not slot.busy:
            continue
        age = now - slot.request_start
        deadline = deadlines.for_request(slot.method, slot.path)
        if age > deadline:
            found.append(Overdue(slot=slot, age_s=age, deadline_s=deadline))
    return sorted(found, key=lambda o: o.age_s, reverse=True)


# -- memory ----------------------------------------------------------------------------


class MemorySampler(Generic[K]):
    """Counts, per worker, how many samples in a row were over the limit."""

    def __init__(self, samples_needed: int) -> None:
        if samples_needed < 1:
            raise ValueError(f"samples_needed: expected >= 1, found {samples_needed}")
        self.samples_needed = samples_needed
        self._streaks: dict[K, int] = {}

    def observe(self, key: K, over: bool) -> bool:
        """Record one sample; True once the worker has been over for N samples in a row."""
        streak = self._streaks.get(key, 0) + 1 if over else 0
        self._streaks[key] = streak
        return streak >= self.samples_needed

    def streak(self, key: K) -> int:
        return self._streaks.get(key, 0)

    def retain(self, keys: Iterable[K]) -> None:
        """Forget workers that are no longer seen."""
        keep = set(keys)
        self._streaks = {k: v for k, v in self._streaks.items() if k in keep}


def within_budget(candidates: Sequence[T], budget: int, in_flight: int) -> list[T]:
    """The candidates that may start recycling now, in the order given (put the largest
    first): at most `budget` workers of one instance recycle at once."""
    return list(candidates[: max(0, budget - in_flight)])


# -- identity --------------------------------------------------------------------------

PROCESS_GONE = "process gone"


def identity_mismatch(
    *, pid: int, start_ticks: int, arbiter_pid: int, found: ProcStat | None
) -> str | None:
    """Why the process now at `pid` is not the worker a slot describes, or None if it is:
    same pid and start time, alive, and a child of the instance's arbiter."""
    if found is None:
        return PROCESS_GONE
    if found.pid != pid:
        return f"expected pid {pid}, found pid {found.pid}"
    if found.start_ticks != start_ticks:
        return (
            f"expected start time {start_ticks}, found {found.start_ticks}: "
            "pid reused by another process"
        )
    if found.state in ("Z", "X"):
        return f"expected a live process, found state {found.state}"
    if found.ppid != arbiter_pid:
        return f"expected parent {arbiter_pid} (the instance's arbiter), found {found.ppid}"
    return None


def same_request(before: Slot, now: Slot | None) -> bool:
    """The slot still holds the request it held when it was judged (nothing was written)."""
    return (
        now is not None
        and now.busy
        and now.seq == before.seq
        and now.pid == before.pid
        and now.start_ticks == before.start_ticks
    )


# -- escalation ------------------------------------------------------------------------


class Reason(enum.StrEnum):
    DEADLINE = "deadline"
    MEMORY = "memory"


class Step(enum.Enum):
    WAIT = "wait"
    KILL = "kill"
    DONE = "done"


@dataclass
class Escalation:
    """A worker that was sent its first signal (SIGABRT for a deadline, SIGTERM for a
    memory recycle) at `signalled_at`, and gets SIGKILL if still alive `grace_s` later."""

    reason: Reason
    grace_s: float
    signalled_at: float
    killed_at: float | None = None

    def step(self, now: float, alive: bool) -> Step:
        if not alive:
            return Step.DONE
        if self.killed_at is None and now - self.signalled_at >= self.grace_s:
            return Step.KILL
        return Step.WAIT

    def killed(self, now: float) -> None:
        self.killed_at = now
