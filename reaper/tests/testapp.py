"""The WSGI app the integration tests run under gunicorn.

    /healthz              200 "ok"
    /sleep?s=N            sleeps N seconds (also under any prefix: /long/sleep?s=N)
    /grow?mb=N[&hold=S]   allocates N MB, keeps it for the worker's lifetime, holds S seconds
                          (also under any prefix)
    /pid                  the worker's pid
    /boom                 raises (gunicorn answers 500)

Each request names its route in environ["kit.route"], the way an app reports it for the
request metrics: the path, or "/unknown" for a 404.

Every response carries the worker's pid in X-Worker-Pid and as its body (but /healthz).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

from prometheus_client import Gauge, Summary

# An app's own metrics, of the kinds a dead worker's files are folded by (appmetrics.retire).
PID_SECONDS = Summary("testapp_pid_seconds", "Time of /pid")
PID_LATEST = Gauge("testapp_pid_latest", "The last /pid answered", multiprocess_mode="max")

StartResponse = Callable[[str, list[tuple[str, str]]], object]

_held: list[bytes] = []


def app(environ: dict[str, object], start_response: StartResponse) -> Iterable[bytes]:
    path = str(environ.get("PATH_INFO", ""))
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    pid = str(os.getpid())
    status, body = "200 OK", pid.encode()
    environ["kit.route"] = path
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/healthz":
        body = b"ok"
    elif path.endswith("/sleep"):
        time.sleep(float(query["s"][0]))
    elif path.endswith("/grow"):
        # Written, not just reserved: every page counts in the worker's private memory.
        _held.append(b"\x01" * (int(query["mb"][0]) << 20))
        time.sleep(float(query.get("hold", ["0"])[0]))
    elif path == "/pid":
        PID_SECONDS.observe(0.001)
        PID_LATEST.set(os.getpid())
    else:
        status, body = "404 Not Found", b"not found"
        environ["kit.route"] = "/unknown"
    start_response(
        status,
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Worker-Pid", pid),
        ],
    )
    return [body]
