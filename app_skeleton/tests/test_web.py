from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

from kit_app import create_app
from kit_app.settings import Settings


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "secret_key": "test-secret",
        "redis_sessions_url": "",
        "redis_queues_url": "",
        "redis_cache_url": "",
        "database_url": "",
        "database_read_url": "",
        "instance": "8002",
        "test_endpoints": False,
        "cache_ttl": 60,
        "queues_high_water": 0.9,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


class Queues(fakeredis.FakeRedis):
    """The queues instance, its memory use as INFO reports it (fakeredis reports none)."""

    used_memory = 1_000_000
    maxmemory = 10_000_000

    def info(self, section: str | None = None, *args: object, **kwargs: object) -> dict[str, Any]:
        if section == "memory":
            return {"used_memory": self.used_memory, "maxmemory": self.maxmemory}
        return dict(super().info(section, *args, **kwargs))  # type: ignore[arg-type]


def make_app(server: fakeredis.FakeServer, **overrides: object) -> Flask:
    return create_app(
        settings(**overrides),
        sessions=fakeredis.FakeRedis(server=server),
        queues=Queues(server=server),
        cache=fakeredis.FakeRedis(server=server),
    )


@pytest.fixture
def client(server: fakeredis.FakeServer) -> FlaskClient:
    return make_app(server).test_client()


def test_healthz_answers_ok_without_dependencies() -> None:
    client = create_app(settings()).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok\n"


def test_whoami_names_the_instance_and_echoes_the_request_id(client: FlaskClient) -> None:
    response = client.get("/whoami", headers={"X-Request-ID": "rid-1"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["instance"] == "8002"
    assert body["request_id"] == "rid-1"
    assert isinstance(body["pid"], int)


def test_the_client_address_is_the_one_the_load_balancer_appended(client: FlaskClient) -> None:
    """One trusted hop: of X-Forwarded-For, only the address the lb added counts."""
    response = client.get(
        "/whoami",
        headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"},
        environ_base={"REMOTE_ADDR": "172.30.213.11"},
    )
    assert response.get_json()["client"] == "198.51.100.7"
    direct = client.get("/whoami", environ_base={"REMOTE_ADDR": "172.30.213.11"})
    assert direct.get_json()["client"] == "172.30.213.11"


def test_session_counter_lives_in_redis_not_in_the_process(
    server: fakeredis.FakeServer,
) -> None:
    first, second = make_app(server).test_client(), make_app(server, instance="8001")
    assert first.get("/session").get_json()["count"] == 1
    assert first.get("/session").get_json()["count"] == 2
    # Another app (another instance) with the same cookie continues the count.
    other = second.test_client()
    cookie = first.get_cookie("session")
    assert cookie is not None
    other.set_cookie("session", cookie.value)
    body = other.get("/session").get_json()
    assert body == {"count": 3, "host": body["host"], "instance": "8001"}


def test_cache_computes_once_then_serves_from_redis(client: FlaskClient) -> None:
    first = client.get("/cache/fibonacci/90").get_json()
    second = client.get("/cache/fibonacci/90").get_json()
    assert first == {"n": 90, "value": "2880067194370816120", "cached": False}
    assert second["cached"] is True
    assert second["value"] == first["value"]


def test_enqueued_job_is_waiting_in_its_queue(
    client: FlaskClient, server: fakeredis.FakeServer
) -> None:
    response = client.post("/jobs?queue=high&label=x", headers={"X-Request-ID": "rid-9"})
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    assert fakeredis.FakeRedis(server=server).lrange("rq:queue:high", 0, -1) == [job_id.encode()]


@pytest.mark.parametrize(("used", "limit", "status"),
                         [(8_900_000, 10_000_000, 202), (9_000_000, 10_000_000, 503),
                          (9_000_000, 0, 202)])  # fmt: skip
def test_a_nearly_full_queues_instance_refuses_new_jobs_cleanly(
    server: fakeredis.FakeServer, used: int, limit: int, status: int
) -> None:
    """At 90 % of maxmemory (no maxmemory: never) a job is refused with 503 and Retry-After,
    and nothing is written."""
    queues = Queues(server=server)
    queues.used_memory, queues.maxmemory = used, limit
    client = create_app(settings(), queues=queues).test_client()
    response = client.post("/jobs?queue=high")
    assert response.status_code == status
    if status == 503:
        assert response.headers["Retry-After"] == "30"
        assert "nearly full" in response.get_json()["error"]
        assert fakeredis.FakeRedis(server=server).keys("rq:*") == []


def test_unknown_queue_is_refused(client: FlaskClient) -> None:
    assert client.post("/jobs?queue=urgent").status_code == 400


def test_readyz_reports_each_dependency(client: FlaskClient) -> None:
    body = client.get("/readyz").get_json()
    assert body == {
        "ready": True,
        "checks": {"redis_sessions": "ok", "redis_cache": "ok", "redis_queues": "ok"},
    }


def test_unconfigured_dependencies_answer_503_not_500() -> None:
    client = create_app(settings()).test_client()
    assert client.get("/session").status_code == 503
    assert client.post("/jobs").status_code == 503
    assert client.get("/cache/fibonacci/3").status_code == 503
    assert client.get("/items").status_code == 503


def test_test_endpoints_exist_only_when_enabled(server: fakeredis.FakeServer) -> None:
    assert make_app(server).test_client().get("/_test/sleep?s=0").status_code == 404
    enabled = make_app(server, test_endpoints=True).test_client()
    assert enabled.get("/_test/sleep?s=0").status_code == 200
    assert enabled.get("/_test/hold?mb=1").get_json()["held_mb"] >= 1
    assert make_app(server).test_client().get("/_test/linger?s=0").status_code == 404


def test_linger_leaves_a_thread_the_exit_waits_for(server: fakeredis.FakeServer) -> None:
    before = set(threading.enumerate())
    answer = make_app(server, test_endpoints=True).test_client().get("/_test/linger?s=0.5")
    assert answer.get_json()["lingers"] == 0.5
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left
    assert not any(t.daemon for t in left), left
    for thread in left:
        thread.join()


def test_logs_are_json_lines_with_the_request_id(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    make_app(server).test_client().post("/jobs", headers={"X-Request-ID": "rid-42"})
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    enqueued = next(x for x in lines if x["message"] == "job enqueued")
    assert enqueued["request_id"] == "rid-42"
    assert enqueued["level"] == logging.getLevelName(logging.INFO)


@pytest.mark.parametrize(
    ("path", "route"),
    [("/jobs/abc", "/jobs/<job_id>"), ("/cache/fibonacci/12", "/cache/fibonacci/<int:n>"),
     ("/no/such/page", "<unmatched>")],
)  # fmt: skip
def test_each_request_names_its_route_template_for_the_metrics(
    client: FlaskClient, path: str, route: str
) -> None:
    """The kit's request metrics label by environ["kit.route"]: the template, never the
    raw path (a path per job id would be a series per job)."""
    seen: dict[str, Any] = {}
    inner = client.application.wsgi_app

    def keep_environ(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # What gunicorn's post_request hook sees: the environ the app was called with.
        answer = inner(environ, start_response)
        seen.update(environ)
        return answer

    client.application.wsgi_app = keep_environ  # type: ignore[method-assign]
    client.get(path)
    assert seen["kit.route"] == route


def test_an_enqueued_job_is_counted_by_queue(client: FlaskClient) -> None:
    before = REGISTRY.get_sample_value("kit_app_jobs_enqueued_total", {"queue": "low"}) or 0.0
    assert client.post("/jobs?queue=low").status_code == 202
    after = REGISTRY.get_sample_value("kit_app_jobs_enqueued_total", {"queue": "low"})
    assert after == before + 1
