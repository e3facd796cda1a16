"""Background jobs run by the RQ workers (`rq worker` imports this module)."""

from __future__ import annotations

import socket
import time

from rq import get_current_job


def report(label: str, seconds: float = 0.0) -> dict[str, object]:
    """The sample job: waits `seconds` (standing in for slow I/O), then says where it ran.

    Its return value is kept as the job's result, which the app shows at /jobs/<id>.
    """
    if seconds:
        time.sleep(seconds)
    job = get_current_job()
    return {
        "label": label,
        "worker_host": socket.gethostname(),
        "job_id": job.id if job else None,
        "finished_at": time.time(),
    }


def noop() -> None:
    """A trivial job, for measuring the queue itself."""


def fail(message: str) -> None:
    """A job that always fails: after its retries it stays in the failed job registry."""
    raise RuntimeError(message)
