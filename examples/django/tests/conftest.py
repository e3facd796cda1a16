"""Fixtures. The environment (an SQLite "default" with a "replica" mirroring it, no Redis
for the cache) comes from [tool.pytest.ini_options] env in pyproject.toml."""

from __future__ import annotations

import fakeredis
import pytest
import redis


@pytest.fixture
def rq_redis(monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """django-rq's queues on an in-memory fakeredis instead of RQ_REDIS_URL."""
    connection = fakeredis.FakeRedis()
    monkeypatch.setattr(
        "django_rq.queues.get_connection", lambda name="default", **kwargs: connection
    )
    return connection
