from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests import db


def test_healthz_touches_nothing(client: Client) -> None:
    # No django_db mark: pytest-django fails the test if the view touches the database.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert response["Content-Type"].startswith("text/plain")


@db
def test_readyz_checks_every_database_alias_and_the_cache(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "checks": {"database:default": "ok", "database:replica": "ok", "cache": "ok"}
    }


@db
def test_readyz_is_503_when_the_cache_is_down(client: Client) -> None:
    # A Redis nobody listens on: connection refused at once.
    down = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        }
    }
    with override_settings(CACHES=down):
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database:default"] == "ok"
    assert checks["cache"].startswith("error: ")


def test_whoami_anonymous(client: Client) -> None:
    assert client.get("/whoami").json() == {"node": "test-node", "instance": "8000", "user": None}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/whoami"])
def test_health_paths_refuse_post(client: Client, path: str) -> None:
    assert client.post(path).status_code == 405
