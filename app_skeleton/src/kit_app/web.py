"""Routes of the example application.

The app keeps no state in the process: whatever must outlive a request lives in Redis or
PostgreSQL, so any instance on any node can serve any request. Connections are opened
lazily, in the worker that uses them, never in the preloading master.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from flask import Flask, Response, abort, jsonify, request, session
from flask_session import Session
from prometheus_client import Counter
from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from werkzeug.middleware.proxy_fix import ProxyFix

from kit_app import db
from kit_app.jobs import report
from kit_app.logs import REQUEST_ID_HEADER, configure_logging
from kit_app.settings import Settings

QUEUES = ("high", "default", "low")
# Memory held by /_test/hold, per worker process: the reaper's recycling is tested with it.
_held: list[bytearray] = []
# The app's own metric, beside the requests the kit counts for every app: under gunicorn
# (PROMETHEUS_MULTIPROC_DIR set) it lands in the workers' files the reaper serves.
JOBS_ENQUEUED = Counter("kit_app_jobs_enqueued", "Jobs the app put on a queue", ["queue"])


def _redis(url: str) -> Redis | None:
    return Redis.from_url(url, health_check_interval=30, socket_timeout=5) if url else None


def fibonacci(n: int) -> int:
    """The "expensive computation" the cache example saves."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def create_app(
    settings: Settings | None = None,
    sessions: Redis | None = None,
    queues: Redis | None = None,
    cache: Redis | None = None,
) -> Flask:
    settings = settings or Settings.from_environ()
    sessions = sessions if sessions is not None else _redis(settings.redis_sessions_url)
    queues = queues if queues is not None else _redis(settings.redis_queues_url)
    cache = cache if cache is not None else _redis(settings.redis_cache_url)
    log = configure_logging()
    hostname = socket.gethostname()

    app = Flask(__name__)
    # One trusted hop: the load balancer, which drops every forwarding header a client sent
    # and sets X-Forwarded-For and X-Forwarded-Proto itself. request.remote_addr is then the
    # client's address, and url schemes follow the client's connection.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    app.config.update(
        SECRET_KEY=settings.secret_key or None,
        SESSION_TYPE="redis",
        SESSION_REDIS=sessions,
        SESSION_KEY_PREFIX="kit:session:",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=86400,
    )
    if sessions is not None:
        Session(app)

    @app.before_request
    def name_the_route() -> None:
        """The route's template for the kit's request metrics (kit.route): /items/<int:id>,
        never the raw path, so every URL does not become a series of its own."""
        rule = request.url_rule
        request.environ["kit.route"] = rule.rule if rule is not None else "<unmatched>"

    def need(client: Redis | None, what: str) -> Redis:
        if client is None:
            abort(503, description=f"{what} is not configured")
        return client

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: answers while the worker can serve; touches no dependency."""
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness: every configured dependency answers."""
        checks: dict[str, str] = {}
        redis = (("redis_sessions", sessions), ("redis_cache", cache), ("redis_queues", queues))
        for name, client in redis:
            if client is not None:
                try:
                    client.ping()
                    checks[name] = "ok"
                except Exception as error:  # any failure means not ready
                    checks[name] = f"error: {error}"
        for name, url in (
            ("database_writer", settings.database_url),
            ("database_reader", settings.database_read_url),
        ):
            if url:
                checks[name] = db.check(url)
        ready = all(value == "ok" for value in checks.values())
        return jsonify(ready=ready, checks=checks), 200 if ready else 503

    @app.get("/whoami")
    def whoami() -> Response:
        """Which node, instance and worker served this request, and its request id."""
        return jsonify(
            host=hostname,
            instance=settings.instance,
            pid=os.getpid(),
            request_id=request.headers.get(REQUEST_ID_HEADER, ""),
            client=request.remote_addr,
        )

    @app.get("/session")
    def counter() -> Response:
        """A per-session counter kept in Redis: it counts on whichever instance serves."""
        need(sessions, "the sessions Redis")
        session["count"] = int(session.get("count", 0)) + 1
        return jsonify(count=session["count"], host=hostname, instance=settings.instance)

    @app.get("/cache/fibonacci/<int:n>")
    def cached_fibonacci(n: int) -> Response:
        """An expensive result computed once, then served from Redis until it expires."""
        client = need(cache, "the cache Redis")
        if n > 10000:
            abort(400, description="n must be at most 10000")
        key = f"kit:cache:fibonacci:{n}"
        hit: bytes | None = client.get(key)  # type: ignore[assignment]
        if hit is not None:
            return jsonify(n=n, value=hit.decode(), cached=True)
        value = str(fibonacci(n))
        client.set(key, value, ex=settings.cache_ttl)
        return jsonify(n=n, value=value, cached=False)

    def queues_nearly_full(client: Redis) -> bool:
        """The queues instance holds settings.queues_high_water of its maxmemory: a job
        refused here is refused cleanly, where at the bound (noeviction) every write fails,
        the workers' own bookkeeping included."""
        memory: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
        limit = int(memory.get("maxmemory", 0))
        return limit > 0 and int(memory["used_memory"]) >= settings.queues_high_water * limit

    @app.post("/jobs")
    def enqueue() -> tuple[Response, int]:
        """Enqueue the sample job; RQ retries it up to 3 times before it is failed."""
        client = need(queues, "the queues Redis")
        queue_name = request.args.get("queue", "default")
        if queue_name not in QUEUES:
            abort(400, description=f"queue must be one of {', '.join(QUEUES)}")
        seconds = float(request.args.get("seconds", "0"))
        if queues_nearly_full(client):
            log.warning("job refused: the queues are nearly full", extra={"queue": queue_name})
            response = jsonify(error="the job queues are nearly full; try again later")
            response.headers["Retry-After"] = "30"
            return response, 503
        job = Queue(queue_name, connection=client).enqueue(
            report,
            request.args.get("label", ""),
            seconds,
            retry=Retry(max=3, interval=[1, 5, 15]),
            job_timeout=max(60, int(seconds * 2) + 30),
            result_ttl=86400,
            failure_ttl=7 * 86400,
            meta={"request_id": request.headers.get(REQUEST_ID_HEADER, "")},
        )
        JOBS_ENQUEUED.labels(queue_name).inc()
        log.info("job enqueued", extra={"job_id": job.id, "queue": queue_name})
        return jsonify(id=job.id, queue=queue_name), 202

    @app.get("/jobs/<job_id>")
    def job_status(job_id: str) -> Response:
        client = need(queues, "the queues Redis")
        try:
            job = Job.fetch(job_id, connection=client)
        except NoSuchJobError:
            abort(404, description="no such job")
        result: Any = job.return_value() if job.is_finished else None
        status = job.get_status()
        return jsonify(id=job.id, status=getattr(status, "value", status), result=result)

    @app.post("/items")
    def create_item() -> tuple[Response, int]:
        """Write through the writer pool (PgBouncer -> the primary)."""
        if not settings.database_url:
            abort(503, description="the database is not configured")
        payload = request.get_json(silent=True) or {}
        name = str(payload.get("name", "")).strip()
        if not name or len(name) > 200:
            abort(400, description="name: 1 to 200 characters")
        return jsonify(db.insert_item(settings.database_url, name)), 201

    @app.get("/items")
    def list_items() -> Response:
        """Read through the reader pool (PgBouncer -> the replicas)."""
        if not settings.database_read_url:
            abort(503, description="the database is not configured")
        name = request.args.get("name")
        return jsonify(items=db.list_items(settings.database_read_url, name))

    if settings.test_endpoints:
        # For the reaper and load tests only; KIT_TEST_ENDPOINTS is off by default.
        @app.get("/_test/sleep")
        def sleep() -> Response:
            seconds = float(request.args.get("s", "1"))
            time.sleep(seconds)
            return jsonify(slept=seconds, pid=os.getpid())

        @app.get("/_test/hold")
        def hold() -> Response:
            megabytes = int(request.args.get("mb", "10"))
            block = bytearray(megabytes * 1024 * 1024)
            block[::4096] = b"\x01" * len(block[::4096])  # touch every page
            _held.append(block)
            held = sum(len(b) for b in _held) // (1024 * 1024)
            return jsonify(held_mb=held, pid=os.getpid())

        @app.get("/_test/linger")
        def linger() -> Response:
            # Answers at once, and leaves a thread that keeps the worker from exiting for
            # `s` seconds once told to stop: a worker slow to exit, as one whose library
            # left a pool's threads running is.
            seconds = float(request.args.get("s", "10"))
            threading.Thread(target=time.sleep, args=(seconds,), daemon=False).start()
            return jsonify(lingers=seconds, pid=os.getpid())

    return app
