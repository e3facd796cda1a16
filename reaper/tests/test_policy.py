"""The reaper's decisions, without processes: deadlines, sampling, budget, identity,
escalation."""

from __future__ import annotations

import pytest

from kit_reaper.policy import (
    Deadlines,
    Escalation,
    MemorySampler,
    Reason,
    Step,
    identity_mismatch,
    overdue,
    same_request,
    within_budget,
)
from kit_reaper.procfs import ProcStat
from kit_reaper.scoreboard import Slot, SlotState

DEADLINES = Deadlines(
    default_s=120,
    methods={"post": 600},
    paths={"/reports/": 900, "/reports/live/": 30, "/api": 60},
)


def slot(
    *,
    index: int = 0,
    state: SlotState = SlotState.BUSY,
    started: float = 0.0,
    method: str = "GET",
    path: str = "/",
    seq: int = 2,
) -> Slot:
    return Slot(index, seq, 100, state, 5000, started, method, path, "rid")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/", 120),  # the default
        ("POST", "/", 600),  # by method, whatever its case in the config
        ("post", "/orders", 600),
        ("GET", "/reports/2024", 900),  # by path prefix
        ("POST", "/reports/2024", 900),  # a path prefix beats the method
        ("GET", "/reports/live/x", 30),  # the longest prefix wins, shorter or longer
        ("GET", "/apix", 60),  # a prefix, not a path segment
        ("GET", "/ap", 120),
    ],
)
def test_deadline_is_chosen_by_longest_path_prefix_then_method(
    method: str, path: str, expected: float
) -> None:
    assert DEADLINES.for_request(method, path) == expected


def test_only_busy_slots_past_their_deadline_are_overdue() -> None:
    now = 1000.0
    slots = [
        slot(index=0, state=SlotState.IDLE, started=0.0),  # idle: never, however old
        slot(index=1, started=now - 119),  # GET, under 120 s
        slot(index=2, started=now - 121),  # GET, over
        slot(index=3, started=now - 500, method="POST"),  # POST, under 600 s
        slot(index=4, started=now - 200, path="/reports/live/1"),  # 30 s, over
        slot(index=5, state=SlotState.EMPTY, started=0.0),
    ]

    late = overdue(slots, DEADLINES, now)

    assert [o.slot.index for o in late] == [4, 2]  # oldest first
    assert [o.deadline_s for o in late] == [30, 120]
    assert late[0].age_s == pytest.approx(200)


def test_recycle_needs_n_consecutive_samples_over_the_limit() -> None:
    sampler: MemorySampler[int] = MemorySampler(samples_needed=3)

    assert [sampler.observe(1, over) for over in (True, True, False, True, True)] == [False] * 5
    assert sampler.observe(1, True) is True  # third in a row
    assert sampler.observe(1, True) is True
    assert sampler.observe(1, False) is False
    assert sampler.streak(1) == 0


def test_sampler_counts_each_worker_apart_and_forgets_the_gone() -> None:
    sampler: MemorySampler[int] = MemorySampler(samples_needed=2)
    sampler.observe(1, True)
    sampler.observe(2, True)

    sampler.retain([2])

    assert sampler.observe(1, True) is False  # worker 1 starts over
    assert sampler.observe(2, True) is True


def test_sampler_needs_at_least_one_sample() -> None:
    with pytest.raises(ValueError, match="expected >= 1, found 0"):
        MemorySampler(samples_needed=0)


@pytest.mark.parametrize(
    ("budget", "in_flight", "expected"),
    [(1, 0, ["a"]), (1, 1, []), (2, 1, ["a"]), (3, 0, ["a", "b", "c"]), (1, 5, [])],
)
def test_recycle_budget_caps_workers_recycling_at_once(
    budget: int, in_flight: int, expected: list[str]
) -> None:
    assert within_budget(["a", "b", "c"], budget, in_flight) == expected


ARBITER = 10


def proc(pid: int = 100, *, ppid: int = ARBITER, start: int = 5000, state: str = "S") -> ProcStat:
    return ProcStat(pid=pid, comm="gunicorn", state=state, ppid=ppid, start_ticks=start)


def test_identity_holds_for_the_arbiters_child_with_the_slots_start_time() -> None:
    assert identity_mismatch(pid=100, start_ticks=5000, arbiter_pid=ARBITER, found=proc()) is None


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (None, "process gone"),
        (proc(start=7777), "pid reused"),  # same pid, another process
        (proc(ppid=1), "expected parent 10"),  # an orphan, or an unrelated process
        (proc(state="Z"), "found state Z"),
    ],
)
def test_identity_fails_for_another_process_at_the_same_pid(
    found: ProcStat | None, reason: str
) -> None:
    mismatch = identity_mismatch(pid=100, start_ticks=5000, arbiter_pid=ARBITER, found=found)
    assert mismatch is not None
    assert reason in mismatch


def test_same_request_means_the_slot_was_not_written_since() -> None:
    before = slot(seq=8)

    assert same_request(before, slot(seq=8))
    assert not same_request(before, slot(seq=10))  # another request, or the same one ended
    assert not same_request(before, slot(seq=8, state=SlotState.IDLE))
    assert not same_request(before, None)  # torn read


def test_escalation_sigkills_after_the_grace_period_once() -> None:
    escalation = Escalation(Reason.DEADLINE, grace_s=5.0, signalled_at=100.0)

    assert escalation.step(104.9, alive=True) is Step.WAIT
    assert escalation.step(105.0, alive=True) is Step.KILL
    escalation.killed(105.0)
    assert escalation.step(200.0, alive=True) is Step.WAIT  # SIGKILL sent; wait for it
    assert escalation.step(200.1, alive=False) is Step.DONE


def test_escalation_ends_when_the_worker_exits_within_its_drain() -> None:
    escalation = Escalation(Reason.MEMORY, grace_s=30.0, signalled_at=0.0)

    assert escalation.step(3.0, alive=False) is Step.DONE
