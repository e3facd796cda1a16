"""Jobs per second of the RQ workers with 1, 2 and 4 workers, for a trivial job and for a
50 ms I/O job, on the local stack's workers host, against its queues Redis instance.

Runs inside the workers container (docker exec), with the application's release and
environment as the rq_worker role installed them: it enqueues the jobs on a queue of its
own, then starts N burst workers (`kit-app-worker --burst`, which imports the job code once
before RQ forks a work horse per job) and times them until the queue is empty. Prints a
Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/rq_throughput.py [--trivial 600] [--io 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess

CONTAINER = "kit-workers-1"
RELEASE = "/srv/kit-app/current/venv/bin"

# Runs in the container, with the application's environment.
INSIDE = """
import json, os, subprocess, sys, time
from redis import Redis
from rq import Queue

kind, workers, jobs, command = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5]
url = os.environ["KIT_REDIS_QUEUES_URL"]
queue = Queue("bench", connection=Redis.from_url(url))
queue.empty()
call = ("kit_app.jobs.noop", ()) if kind == "trivial" else ("kit_app.jobs.report", ("b", 0.05))
queue.enqueue_many([Queue.prepare_data(call[0], call[1], result_ttl=60) for _ in range(jobs)])
start = time.monotonic()
procs = [
    subprocess.Popen(
        [os.path.join(sys.argv[4], "kit-app-worker"), "--burst", "--instance", f"bench{n}",
         "--scheduler-instance", "none", "--queues", "bench"]
        if command == "kit-app-worker" else
        [os.path.join(sys.argv[4], "rq"), "worker", "--burst", "--quiet", "--url", url,
         "--name", f"bench-{n}-{os.getpid()}", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for n in range(workers)
]
for proc in procs:
    proc.wait()
elapsed = time.monotonic() - start
done = queue.finished_job_registry.count
print(json.dumps({"elapsed": elapsed, "finished": done, "left": queue.count}))
queue.finished_job_registry.cleanup()
"""


def run(kind: str, workers: int, jobs: int, command: str = "kit-app-worker") -> dict[str, float]:
    out = subprocess.run(
        ["docker", "exec", "-i", CONTAINER, "sh", "-c",
         f"set -a; . /etc/kit-app/env; set +a; {RELEASE}/python - {kind} {workers} {jobs} "
         f"{RELEASE} {command}"],
        input=INSIDE, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trivial", type=int, default=600, help="trivial jobs per run")
    parser.add_argument("--io", type=int, default=200, help="50 ms jobs per run")
    args = parser.parse_args()

    print("| job | workers | jobs | seconds | jobs/s | vs 1 worker |")
    print("|---|---|---|---|---|---|")
    for kind, jobs in (("trivial", args.trivial), ("50 ms I/O", args.io)):
        base = 0.0
        for workers in (1, 2, 4):
            result = run("trivial" if kind == "trivial" else "io", workers, jobs)
            if result["left"]:
                raise SystemExit(f"{kind}, {workers} workers: {result['left']} jobs left")
            rate = jobs / result["elapsed"]
            base = base or rate
            print(
                f"| {kind} | {workers} | {jobs} | {result['elapsed']:.2f} | {rate:.0f} "
                f"| {rate / base:.2f} |"
            )
    # The same trivial jobs under plain `rq worker`, which imports the job's module in every
    # forked work horse instead of once before forking.
    result = run("trivial", 1, args.trivial // 4, command="rq")
    rate = args.trivial // 4 / result["elapsed"]
    print(f"| trivial, plain `rq worker` | 1 | {args.trivial // 4} | {result['elapsed']:.2f} "
          f"| {rate:.0f} | |")  # fmt: skip


if __name__ == "__main__":
    main()
