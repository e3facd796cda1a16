"""The application's service URLs, built from what the redis and pgbouncer roles publish,
its environment aliases and its health check's accepted statuses.

User names and passwords are percent-encoded whole (`/`, `@`, `:` included: each would
end a URL's user information early); an IPv6 host is bracketed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ansible.errors import AnsibleFilterError


def service_url(
    scheme: str, user: str, password: str, host: str, port: int | str, path: str
) -> str:
    """`scheme://user:password@host:port/path`, user and password percent-encoded."""
    netloc_host = f"[{host}]" if ":" in host else host
    return (
        f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{netloc_host}:{port}/{path}"
    )


def redis_url(endpoint: Mapping[str, Any], user: str, password: str) -> str:
    """An instance's URL, database 0. An instance on TLS (the endpoint's `tls` names the CA
    file) gets `rediss://` and the CA in the query, which redis-py reads: it requires the
    server's certificate, checked against that CA, by default (redis-py 7, which the
    skeleton ships, checks its address against the host too). One parameter only: the
    environment file stays a shell's to source (an `&` would end the assignment)."""
    host, port = str(endpoint["host"]), endpoint["port"]
    tls = endpoint.get("tls")
    if not tls:
        return service_url("redis", user, password, host, port, "0")
    query = urlencode({"ssl_ca_certs": tls["ca_file"]}, safe="/")
    return service_url("rediss", user, password, host, port, f"0?{query}")


def app_redis_urls(
    endpoints: Mapping[str, Mapping[str, Any]], user: str, password: str
) -> dict[str, str]:
    """One URL per Redis instance the redis role published (`redis_endpoints`), for the
    instances where `user` exists (all of them when the endpoints name no users)."""
    return {
        name: redis_url(ep, user, password)
        for name, ep in endpoints.items()
        if user in ep.get("users", [user])
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


STATUS = re.compile(r"^(?P<low>[1-5][0-9][0-9])(?:-(?P<high>[1-5][0-9][0-9]))?$")


def app_status_codes(spec: str | int) -> list[int]:
    """HAProxy's status list ("200", "200-399,401") as every code it accepts."""
    codes: list[int] = []
    for part in str(spec).replace(" ", "").split(","):
        match = STATUS.match(part)
        low = int(match["low"]) if match else 0
        high = int(match["high"] or low) if match else 0
        if not match or high < low:
            raise AnsibleFilterError(
                f"app_health_status: '{spec}' is not a list of HTTP status codes and ranges "
                "such as 200 or 200-399,401"
            )
        codes.extend(range(low, high + 1))
    return sorted(set(codes))


def app_env_aliases(aliases: Mapping[str, str], kit: Mapping[str, str]) -> dict[str, str]:
    """{NAME: value of the KIT_* name it stands for}, for the names the kit has a value of."""
    return {name: kit[source] for name, source in sorted(aliases.items()) if source in kit}


def app_env_override(
    env: Mapping[str, str], aliases: Mapping[str, str], name: str, value: str
) -> dict[str, str]:
    """The environment with `name` and every alias of it set to `value`."""
    names = {name, *(alias for alias, source in aliases.items() if source == name)}
    return {**env, **dict.fromkeys(sorted(names), value)}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "app_redis_urls": app_redis_urls,
            "app_database_urls": app_database_urls,
            "app_status_codes": app_status_codes,
            "app_env_aliases": app_env_aliases,
            "app_env_override": app_env_override,
        }
