"""Patroni's configuration file for one database host, built from the role's variables.

The role's settings (sized from memory, TLS, archiving, the user's postgresql_settings) go
where Patroni reads each: the settings every member must share, and the ones Patroni keeps
for itself, into the cluster-wide configuration Patroni stores in etcd (`bootstrap.dcs`,
written by the first member only); the rest into this host's `postgresql.parameters`.
Patroni sets listen_addresses, port, cluster_name and hot_standby on PostgreSQL's command
line from its own keys, so they never appear as parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Settings Patroni takes from the cluster-wide configuration only: a local value is ignored
# (Patroni's postgresql/config.py, CMDLINE_OPTIONS and the DCS-only list).
DCS_ONLY = frozenset(
    {
        "max_connections",
        "max_locks_per_transaction",
        "max_worker_processes",
        "max_prepared_transactions",
        "wal_level",
        "track_commit_timestamp",
        "max_wal_senders",
        "max_replication_slots",
        "wal_keep_size",
        "wal_keep_segments",
        "wal_log_hints",
    }
)
# Settings Patroni derives from its own keys (postgresql.listen, connect_address, scope).
FROM_PATRONI = frozenset({"listen_addresses", "port", "cluster_name", "hot_standby"})


class PatroniConfigError(ValueError):
    """An input Patroni cannot be given; the message names it."""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def patroni_parameters(settings: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Split PostgreSQL settings into {"dcs": ..., "local": ...}, each name to its text
    value; the names Patroni sets itself are left out."""
    dcs: dict[str, str] = {}
    local: dict[str, str] = {}
    for name, value in settings.items():
        if name in FROM_PATRONI:
            continue
        (dcs if name in DCS_ONLY else local)[name] = _text(value)
    return {"dcs": dcs, "local": local}


def _tls(pki: Mapping[str, str]) -> dict[str, str]:
    return {
        "sslmode": "verify-full",
        "sslrootcert": pki["ca"],
        "sslcert": pki["certificate"],
        "sslkey": pki["private_key"],
    }


def patroni_config(kit: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration file of the member `kit["name"]`.

    `kit` holds: name, scope, namespace, address (private), listen (addresses), port,
    restapi_port, etcd_hosts (host:port list), pki (ca, certificate, private_key), version,
    data_dir, bin_dir, config_dir, socket_dir, settings, replication (user, password),
    rewind (user, password), restapi (user, password), allowlist, bootstrap (bool),
    synchronous_mode (false, true or "quorum"), ttl, loop_wait, retry_timeout,
    maximum_lag_on_failover, restore_command ("" for none), pgbackrest_stanza ("" for
    none). Raises PatroniConfigError, naming the input, for what Patroni would refuse or
    run badly with."""
    for key in ("ttl", "loop_wait", "retry_timeout"):
        if int(kit[key]) <= 0:
            raise PatroniConfigError(f"{key} must be a positive number of seconds")
    if int(kit["loop_wait"]) + 2 * int(kit["retry_timeout"]) > int(kit["ttl"]):
        raise PatroniConfigError(
            "loop_wait + 2 x retry_timeout must not exceed ttl "
            f"({kit['loop_wait']} + 2 x {kit['retry_timeout']} > {kit['ttl']}): a member would "
            "lose the leader lock while it still retries"
        )
    if kit["synchronous_mode"] not in (False, True, "quorum"):
        raise PatroniConfigError(
            f"synchronous_mode is {kit['synchronous_mode']!r}: false, true or quorum"
        )
    if not kit["etcd_hosts"]:
        raise PatroniConfigError("etcd_hosts is empty: Patroni needs the etcd members")
    pki = kit["pki"]
    parameters = patroni_parameters(kit["settings"])
    # pg_rewind needs hint bits in the WAL (Debian's initdb turns no data checksums on).
    parameters["dcs"]["wal_log_hints"] = "on"
    restapi = f"{kit['address']}:{int(kit['restapi_port'])}"
    tls_files = {"certfile": pki["certificate"], "keyfile": pki["private_key"]}
    postgresql: dict[str, Any] = {
        "listen": ",".join(dict.fromkeys(["127.0.0.1", *_as_list(kit["listen"])]))
        + f":{int(kit['port'])}",
        "connect_address": f"{kit['address']}:{int(kit['port'])}",
        "data_dir": kit["data_dir"],
        "bin_dir": kit["bin_dir"],
        "config_dir": kit["config_dir"],
        # Patroni writes this file itself before each connection it makes as a client:
        # not the kit's own .pgpass.
        "pgpass": "/var/lib/postgresql/.pgpass_patroni",
        "use_unix_socket": True,
        # Patroni's own replication connection to this member (after pg_rewind, say) goes
        # over the socket: its certificate names no "localhost" for verify-full.
        "use_unix_socket_repl": True,
        "authentication": {
            "superuser": {"username": "postgres"},
            "replication": {
                "username": kit["replication"]["user"],
                "password": kit["replication"]["password"],
                **_tls(pki),
            },
            "rewind": {
                "username": kit["rewind"]["user"],
                "password": kit["rewind"]["password"],
                **_tls(pki),
            },
        },
        "parameters": {
            **parameters["local"],
            "unix_socket_directories": kit["socket_dir"],
        },
        "basebackup": {"checkpoint": "fast"},
        "create_replica_methods": ["basebackup"],
        "remove_data_directory_on_rewind_failure": False,
        "remove_data_directory_on_diverged_timelines": False,
    }
    if kit["restore_command"]:
        postgresql["recovery_conf"] = {"restore_command": kit["restore_command"]}
    if kit["pgbackrest_stanza"]:
        postgresql["create_replica_methods"] = ["pgbackrest", "basebackup"]
        postgresql["pgbackrest"] = {
            "command": f"/usr/bin/pgbackrest --stanza={kit['pgbackrest_stanza']}"
            " --delta --type=standby restore",
            "keep_data": True,
            "no_params": True,
        }
    config: dict[str, Any] = {
        "scope": kit["scope"],
        "namespace": kit["namespace"],
        "name": kit["name"],
        "restapi": {
            "listen": restapi,
            "connect_address": restapi,
            **tls_files,
            "cafile": pki["ca"],
            # A client certificate only for the calls that change something; the health
            # checks (GET, OPTIONS) need none.
            "verify_client": "optional",
            "allowlist": list(dict.fromkeys(["127.0.0.1", *kit["allowlist"]])),
            "allowlist_include_members": True,
            "authentication": {
                "username": kit["restapi"]["user"],
                "password": kit["restapi"]["password"],
            },
        },
        "ctl": {**tls_files, "cacert": pki["ca"]},
        "etcd3": {
            "hosts": list(kit["etcd_hosts"]),
            "protocol": "https",
            "cacert": pki["ca"],
            "cert": pki["certificate"],
            "key": pki["private_key"],
        },
        "postgresql": postgresql,
        "watchdog": {"mode": "off"},
        "tags": {
            "nofailover": False,
            "noloadbalance": False,
            "clonefrom": False,
            "nosync": False,
        },
    }
    if kit["bootstrap"]:
        config["bootstrap"] = {"dcs": patroni_dcs(kit, parameters["dcs"])}
    return config


def patroni_dcs(kit: Mapping[str, Any], dcs_parameters: Mapping[str, str]) -> dict[str, Any]:
    """The cluster-wide configuration: what the first member writes to etcd, and what a
    later run compares with the cluster's (GET /config) and sends back (PATCH /config)."""
    synchronous = kit["synchronous_mode"]
    return {
        "ttl": int(kit["ttl"]),
        "loop_wait": int(kit["loop_wait"]),
        "retry_timeout": int(kit["retry_timeout"]),
        "maximum_lag_on_failover": int(kit["maximum_lag_on_failover"]),
        "synchronous_mode": synchronous,
        "synchronous_mode_strict": False,
        "synchronous_node_count": 1,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": dict(dcs_parameters),
        },
    }


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "patroni_config": patroni_config,
            "patroni_parameters": patroni_parameters,
        }
