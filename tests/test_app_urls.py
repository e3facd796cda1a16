"""The application's Redis and database URLs, as the app role writes them to its env file."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from conftest import load_plugin

app_urls = load_plugin("roles/app/filter_plugins/app_urls.py")

AWKWARD = "p/a:s@s w%rd#?"
PGBOUNCER = {
    "host": "127.0.0.1",
    "port": 6432,
    "database": "kit",
    "readonly_database": "kit_ro",
    "users": {"app": "kit_app", "readonly": "kit_ro", "owner": "kit_owner"},
}


def test_a_password_with_url_delimiters_survives_the_round_trip() -> None:
    urls = app_urls.app_redis_urls({"queues": {"host": "10.0.0.4", "port": 6380}}, "app", AWKWARD)

    parts = urlsplit(urls["queues"])
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "redis",
        "10.0.0.4",
        6380,
        "/0",
    )
    assert (parts.username, unquote(parts.password or "")) == ("app", AWKWARD)


def test_database_urls_name_each_user_and_database() -> None:
    urls = app_urls.app_database_urls(PGBOUNCER, {"app": "a", "readonly": AWKWARD, "owner": "o"})

    assert urls["write"] == "postgresql://kit_app:a@127.0.0.1:6432/kit"
    assert urls["owner"] == "postgresql://kit_owner:o@127.0.0.1:6432/kit"
    read = urlsplit(urls["read"])
    assert (read.username, unquote(read.password or ""), read.path) == (
        "kit_ro",
        AWKWARD,
        "/kit_ro",
    )


def test_no_pgbouncer_gives_no_database_url() -> None:
    assert app_urls.app_database_urls({}, {"app": "a", "readonly": "r", "owner": "o"}) == {}


def test_an_ipv6_host_is_bracketed() -> None:
    urls = app_urls.app_redis_urls({"s": {"host": "fd00::4", "port": 6379}}, "app", "pw")
    assert urls["s"] == "redis://app:pw@[fd00::4]:6379/0"
    assert urlsplit(urls["s"]).hostname == "fd00::4"
