"""The RQ worker of the application: `kit-app-worker --instance N`.

It imports the application's job code once, before RQ forks a work horse for each job,
so a job starts without importing anything. SIGTERM is RQ's warm shutdown: the job in
hand finishes, then the worker exits; the unit's stop timeout is above the longest job.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from redis import Redis
from rq import Queue, Worker
from rq.job import Job

import kit_app.jobs  # noqa: F401 - imported before the fork, on purpose

DEFAULT_QUEUES = ("high", "default", "low")
log = logging.getLogger("kit_app.worker")


def capped(timeout: int | float | None, cap: int) -> int | float:
    """A job's timeout within `cap`: RQ's default (None: 180 s) and "none" (-1) included."""
    if timeout is None:
        timeout = Queue.DEFAULT_TIMEOUT
    return cap if timeout < 0 or timeout > cap else timeout


class TimeoutCap:
    """Caps every job's timeout at `max_job_timeout` before the work horse forks: a job never
    runs longer than the worker unit waits on a stop (rq_worker_longest_job), whatever the
    code that enqueued it asked for, so a warm shutdown never has to be a kill."""

    max_job_timeout: int | None = None

    def execute_job(self, job: Job, queue: Queue) -> None:
        if self.max_job_timeout is not None:
            wanted = job.timeout
            job.timeout = capped(job.timeout, self.max_job_timeout)
            if job.timeout != wanted:
                log.warning(
                    "job %s asked for a timeout of %s s; capped at %s s",
                    job.id, wanted, job.timeout,
                )  # fmt: skip
        super().execute_job(job, queue)  # type: ignore[misc]


class KitWorker(TimeoutCap, Worker):
    """RQ's forking worker, with the timeout cap."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kit-app-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="1", help="this worker's number on the host")
    parser.add_argument(
        "--queues", nargs="+", default=list(DEFAULT_QUEUES), help="queues, highest first"
    )
    parser.add_argument(
        "--scheduler-instance",
        default="1",
        help="the instance that also runs the scheduler (delayed jobs and retries)",
    )
    parser.add_argument("--result-ttl", type=int, default=86400)
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    parser.add_argument("--url", default=os.environ.get("KIT_REDIS_QUEUES_URL", ""))
    parser.add_argument(
        "--max-job-timeout",
        type=int,
        default=None,
        help="cap every job's timeout at this many seconds (the unit's stop timeout is above)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if not args.url:
        sys.exit("kit-app-worker: KIT_REDIS_QUEUES_URL (or --url) is not set")
    connection = Redis.from_url(args.url, health_check_interval=30)
    queues = [Queue(name, connection=connection) for name in args.queues]
    worker = KitWorker(
        queues,
        connection=connection,
        # The pid too: a worker killed without unregistering leaves its name behind a while.
        name=f"{socket.gethostname()}.{args.instance}.{os.getpid()}",
        default_result_ttl=args.result_ttl,
    )
    worker.max_job_timeout = args.max_job_timeout
    worker.work(
        burst=args.burst,
        with_scheduler=args.instance == args.scheduler_instance,
        logging_level="INFO",
    )


if __name__ == "__main__":
    main()
