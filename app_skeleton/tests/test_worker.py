"""The worker's timeout cap: a job never runs longer than the worker unit waits on a stop."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue, SimpleWorker
from rq.job import get_current_job

from kit_app.worker import TimeoutCap, capped, parse


def own_timeout() -> float | None:
    """A job that returns the timeout it runs under."""
    job = get_current_job()
    assert job is not None
    return job.timeout


class CappedSimpleWorker(TimeoutCap, SimpleWorker):
    """The cap on RQ's in-process worker: fakeredis lives in this process only."""


@pytest.mark.parametrize(
    ("timeout", "expected"), [(None, 180), (-1, 600), (30, 30), (600, 600), (3600, 600)]
)
def test_a_timeout_is_capped_rqs_default_and_none_included(
    timeout: int | None, expected: int
) -> None:
    assert capped(timeout, 600) == expected


@pytest.mark.parametrize(("asked", "ran"), [(3600, 60), (-1, 60), (20, 20)])
def test_the_job_runs_under_the_capped_timeout(asked: int, ran: int) -> None:
    connection = fakeredis.FakeRedis()
    queue = Queue("default", connection=connection)
    job = queue.enqueue(own_timeout, job_timeout=asked)
    worker = CappedSimpleWorker([queue], connection=connection)
    worker.max_job_timeout = 60

    worker.work(burst=True)

    assert job.return_value(refresh=True) == ran


def test_the_command_line_takes_the_cap() -> None:
    assert parse(["--max-job-timeout", "600"]).max_job_timeout == 600
    assert parse([]).max_job_timeout is None
