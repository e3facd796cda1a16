"""The application's Redis and database URLs, as the app role writes them to its env file."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from ansible.errors import AnsibleFilterError
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


def test_a_user_gets_urls_only_for_the_instances_it_exists_on() -> None:
    endpoints = {
        "sessions": {"host": "10.0.0.4", "port": 6379, "users": ["app"]},
        "queues": {"host": "10.0.0.4", "port": 6380, "users": ["app", "worker"]},
    }
    assert sorted(app_urls.app_redis_urls(endpoints, "app", "pw")) == ["queues", "sessions"]
    assert sorted(app_urls.app_redis_urls(endpoints, "worker", "pw")) == ["queues"]


def test_an_instance_on_tls_gets_a_url_that_checks_its_certificate() -> None:
    endpoint = {"host": "10.0.0.4", "port": 6380, "tls": {"ca_file": "/etc/ssl/kit/ca.crt"}}
    parts = urlsplit(app_urls.app_redis_urls({"queues": endpoint}, "app", AWKWARD)["queues"])

    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "rediss",
        "10.0.0.4",
        6380,
        "/0",
    )
    assert unquote(parts.password or "") == AWKWARD
    assert parse_qs(parts.query) == {"ssl_ca_certs": ["/etc/ssl/kit/ca.crt"]}
    # The environment file is sourced by shells too: nothing in it may end an assignment.
    assert "&" not in urlsplit(app_urls.redis_url(endpoint, "app", "pw")).geturl()


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


def test_health_statuses_are_read_as_haproxy_writes_them() -> None:
    assert app_urls.app_status_codes("200") == [200]
    assert app_urls.app_status_codes(204) == [204]
    assert app_urls.app_status_codes("200-204,401") == [200, 201, 202, 203, 204, 401]


def test_a_status_that_is_not_a_code_or_range_names_the_variable() -> None:
    for bad in ("ok", "2xx", "299-200", "200,", "1000"):
        with pytest.raises(AnsibleFilterError, match="app_health_status"):
            app_urls.app_status_codes(bad)


def test_an_alias_copies_its_kit_value_and_is_left_out_where_the_kit_has_none() -> None:
    kit = {"KIT_DATABASE_URL": "postgresql://w", "KIT_SECRET_KEY": "k"}
    aliases = {
        "DATABASE_URL": "KIT_DATABASE_URL",
        "DJANGO_SECRET_KEY": "KIT_SECRET_KEY",
        "REDIS_URL": "KIT_REDIS_SESSIONS_URL",
    }

    assert app_urls.app_env_aliases(aliases, kit) == {
        "DATABASE_URL": "postgresql://w",
        "DJANGO_SECRET_KEY": "k",
    }


def test_the_migration_sees_the_owner_under_every_name_of_the_write_url() -> None:
    env = {"KIT_DATABASE_URL": "w", "DATABASE_URL": "w", "DATABASE_READ_URL": "r", "X": "1"}
    aliases = {"DATABASE_URL": "KIT_DATABASE_URL", "DATABASE_READ_URL": "KIT_DATABASE_READ_URL"}

    assert app_urls.app_env_override(env, aliases, "KIT_DATABASE_URL", "owner") == {
        "KIT_DATABASE_URL": "owner",
        "DATABASE_URL": "owner",
        "DATABASE_READ_URL": "r",
        "X": "1",
    }
