"""The RQ worker of the application: `kit-app-worker --instance N`.

It imports the application's job code once, before RQ forks a work horse for each job,
so a job starts without importing anything. SIGTERM is RQ's warm shutdown: the job in
hand finishes, then the worker exits; the unit's stop timeout is above the longest job.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from redis import Redis
from rq import Queue, Worker

import kit_app.jobs  # noqa: F401 - imported before the fork, on purpose

DEFAULT_QUEUES = ("high", "default", "low")


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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if not args.url:
        sys.exit("kit-app-worker: KIT_REDIS_QUEUES_URL (or --url) is not set")
    connection = Redis.from_url(args.url, health_check_interval=30)
    queues = [Queue(name, connection=connection) for name in args.queues]
    worker = Worker(
        queues,
        connection=connection,
        # The pid too: a worker killed without unregistering leaves its name behind a while.
        name=f"{socket.gethostname()}.{args.instance}.{os.getpid()}",
        default_result_ttl=args.result_ttl,
    )
    worker.work(
        burst=args.burst,
        with_scheduler=args.instance == args.scheduler_instance,
        logging_level="INFO",
    )


if __name__ == "__main__":
    main()
