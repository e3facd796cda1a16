"""The settings read from the environment, each case in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SHOW = """
import json, django
django.setup()
from django.conf import settings
from django.db import router
from guestbook.models import Entry
print(json.dumps({
    "databases": settings.DATABASES,
    "read_alias": router.db_for_read(Entry),
    "cache": settings.CACHES["default"],
    "rq": settings.RQ_QUEUES,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "csrf_trusted_origins": settings.CSRF_TRUSTED_ORIGINS,
}, default=str))
"""

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "guestbook_site.settings",
    "DJANGO_SECRET_KEY": "not-a-real-key",
    "DATABASE_URL": "postgresql://kit_app:p%40ss%2Fw%3Ard@127.0.0.1:6432/kit",
    "DATABASE_READ_URL": "postgresql://kit_ro:r%40@127.0.0.1:6432/kit_ro",
    "REDIS_URL": "redis://kit:s%40crets@10.0.0.5:6379/0",
    "RQ_REDIS_URL": "redis://rq:q%40@10.0.0.6:6380/0",
    "DJANGO_ALLOWED_HOSTS": "app.example.com, .example.org",
    "CSRF_TRUSTED_ORIGINS": "https://app.example.com",
}


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The test run's environment without any variable the settings read.
    kept = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        env={**kept, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def show(env: dict[str, str]) -> dict[str, object]:
    result = run(env)
    assert result.returncode == 0, result.stderr
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


def test_production_settings() -> None:
    shown = show(PRODUCTION)
    databases = shown["databases"]
    assert isinstance(databases, dict)
    default, replica = databases["default"], databases["replica"]
    assert default["ENGINE"] == "django.db.backends.postgresql"
    assert (default["USER"], default["PASSWORD"]) == ("kit_app", "p@ss/w:rd")
    assert (default["HOST"], default["PORT"], default["NAME"]) == ("127.0.0.1", 6432, "kit")
    assert (replica["USER"], replica["PASSWORD"], replica["NAME"]) == ("kit_ro", "r@", "kit_ro")
    for config in (default, replica):
        # PgBouncer in transaction pooling mode.
        assert config["DISABLE_SERVER_SIDE_CURSORS"] is True
        assert config["OPTIONS"] == {"server_side_binding": False}
        assert (config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"]) == (60, True)
    assert replica["TEST"]["MIRROR"] == "default"
    assert shown["read_alias"] == "replica"
    assert shown["cache"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://kit:s%40crets@10.0.0.5:6379/0",
    }
    assert shown["rq"] == {
        name: {"URL": "redis://rq:q%40@10.0.0.6:6380/0"} for name in ("high", "default", "low")
    }
    assert shown["allowed_hosts"] == ["app.example.com", ".example.org", "localhost", "127.0.0.1"]
    assert shown["csrf_trusted_origins"] == ["https://app.example.com"]


def test_without_a_read_url_there_is_no_replica_and_reads_go_to_default() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "DATABASE_READ_URL"}
    shown = show(env)
    databases = shown["databases"]
    assert isinstance(databases, dict)
    assert list(databases) == ["default"]
    assert shown["read_alias"] == "default"


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DATABASE_URL"])
def test_refuses_to_start_without(missing: str) -> None:
    result = run({k: v for k, v in PRODUCTION.items() if k != missing})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"The environment variable {missing} must be set." in result.stderr
