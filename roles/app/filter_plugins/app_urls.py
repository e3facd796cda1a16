"""The application's service URLs, built from what the redis and pgbouncer roles publish.

User names and passwords are percent-encoded whole (`/`, `@`, `:` included: each would
end a URL's user information early); an IPv6 host is bracketed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote


def service_url(
    scheme: str, user: str, password: str, host: str, port: int | str, path: str
) -> str:
    """`scheme://user:password@host:port/path`, user and password percent-encoded."""
    netloc_host = f"[{host}]" if ":" in host else host
    return (
        f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{netloc_host}:{port}/{path}"
    )


def app_redis_urls(
    endpoints: Mapping[str, Mapping[str, Any]], user: str, password: str
) -> dict[str, str]:
    """One URL per Redis instance the redis role published (`redis_endpoints`), database 0."""
    return {
        name: service_url("redis", user, password, str(ep["host"]), ep["port"], "0")
        for name, ep in endpoints.items()
    }


def app_database_urls(pgbouncer: Mapping[str, Any], passwords: Mapping[str, str]) -> dict[str, str]:
    """The node's PgBouncer databases (`pgbouncer_endpoint`) as `write`, `read` and `owner`
    URLs, with the passwords of the app, readonly and owner users; {} without PgBouncer."""
    if not pgbouncer:
        return {}
    host, port, users = str(pgbouncer["host"]), pgbouncer["port"], pgbouncer["users"]
    return {
        "write": service_url("postgresql", users["app"], passwords["app"], host, port,
                             pgbouncer["database"]),
        "read": service_url("postgresql", users["readonly"], passwords["readonly"], host, port,
                            pgbouncer["readonly_database"]),
        "owner": service_url("postgresql", users["owner"], passwords["owner"], host, port,
                             pgbouncer["database"]),
    }  # fmt: skip


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"app_redis_urls": app_redis_urls, "app_database_urls": app_database_urls}
