"""Settings from the environment the app role renders (/etc/<app>/env)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Every external dependency is a URL; an empty one means "not configured here"."""

    secret_key: str
    redis_sessions_url: str
    redis_queues_url: str
    redis_cache_url: str
    database_url: str
    database_read_url: str
    instance: str
    test_endpoints: bool
    cache_ttl: int
    # New jobs are refused (503) once the queues instance holds this share of its maxmemory,
    # before Redis's noeviction starts failing every write, RQ's own bookkeeping included.
    queues_high_water: float

    @classmethod
    def from_environ(cls) -> Settings:
        return cls(
            secret_key=os.environ.get("KIT_SECRET_KEY", ""),
            redis_sessions_url=os.environ.get("KIT_REDIS_SESSIONS_URL", ""),
            redis_queues_url=os.environ.get("KIT_REDIS_QUEUES_URL", ""),
            redis_cache_url=os.environ.get("KIT_REDIS_CACHE_URL", ""),
            database_url=os.environ.get("KIT_DATABASE_URL", ""),
            database_read_url=os.environ.get("KIT_DATABASE_READ_URL", "")
            or os.environ.get("KIT_DATABASE_URL", ""),
            instance=os.environ.get("KIT_INSTANCE", ""),
            test_endpoints=_flag("KIT_TEST_ENDPOINTS"),
            cache_ttl=int(os.environ.get("KIT_CACHE_TTL", "300")),
            queues_high_water=float(os.environ.get("KIT_QUEUES_HIGH_WATER", "0.9")),
        )
