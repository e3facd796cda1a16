"""Patroni's configuration file, as the postgresql role builds it for each database host."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import load_plugin

patroni = load_plugin("roles/postgresql/filter_plugins/patroni_config.py")

PKI = {
    "ca": "/etc/ssl/kit/ca.crt",
    "certificate": "/etc/ssl/kit/host.crt",
    "private_key": "/etc/ssl/private/kit-host.key",
}


def kit(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "db-1",
        "scope": "kit",
        "namespace": "/kit/",
        "address": "10.0.0.51",
        "listen": ["10.0.0.51"],
        "port": 5432,
        "restapi_port": 8008,
        "etcd_hosts": ["10.0.0.51:2379", "10.0.0.52:2379", "10.0.0.61:2379"],
        "pki": PKI,
        "version": 17,
        "data_dir": "/var/lib/postgresql/17/main",
        "bin_dir": "/usr/lib/postgresql/17/bin",
        "config_dir": "/etc/postgresql/17/main",
        "socket_dir": "/var/run/postgresql",
        "settings": {
            "listen_addresses": "localhost,10.0.0.51",
            "port": "5432",
            "max_connections": "100",
            "shared_buffers": "256MB",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "hot_standby": "on",
            "ssl": "on",
            "archive_mode": "on",
        },
        "replication": {"user": "replicator", "password": "r-secret"},
        "rewind": {"user": "kit_rewind", "password": "w-secret"},
        "restapi": {"user": "patroni", "password": "p-secret"},
        "allowlist": ["10.0.0.51", "10.0.0.52"],
        "bootstrap": True,
        "synchronous_mode": False,
        "ttl": 20,
        "loop_wait": 5,
        "retry_timeout": 7,
        "maximum_lag_on_failover": 1048576,
        "restore_command": 'pgbackrest --stanza=kit archive-get %f "%p"',
        "pgbackrest_stanza": "kit",
    }
    return base | overrides


def test_settings_every_member_shares_go_to_the_cluster_the_rest_stay_on_the_host() -> None:
    config = patroni.patroni_config(kit())
    local = config["postgresql"]["parameters"]
    shared = config["bootstrap"]["dcs"]["postgresql"]["parameters"]

    assert shared == {
        "max_connections": "100",
        "wal_level": "replica",
        "max_wal_senders": "10",
        "wal_log_hints": "on",
    }
    assert local["shared_buffers"] == "256MB"
    assert local["ssl"] == "on"
    assert not {"listen_addresses", "port", "hot_standby"} & set(local)
    assert config["postgresql"]["listen"] == "127.0.0.1,10.0.0.51:5432"
    assert config["postgresql"]["connect_address"] == "10.0.0.51:5432"


def test_only_the_bootstrap_host_carries_the_cluster_wide_configuration() -> None:
    assert "bootstrap" not in patroni.patroni_config(kit(bootstrap=False))
    dcs = patroni.patroni_config(kit())["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 5, 7)
    assert dcs["postgresql"]["use_pg_rewind"] is True


def test_every_connection_patroni_makes_is_verified_tls_with_the_hosts_certificate() -> None:
    config = patroni.patroni_config(kit())
    for user in ("replication", "rewind"):
        auth = config["postgresql"]["authentication"][user]
        assert auth["sslmode"] == "verify-full"
        assert auth["sslrootcert"] == PKI["ca"]
        assert auth["sslcert"] == PKI["certificate"]
    assert config["etcd3"]["protocol"] == "https"
    assert config["etcd3"]["cert"] == PKI["certificate"]
    assert config["restapi"]["verify_client"] == "optional"
    assert config["restapi"]["allowlist"] == ["127.0.0.1", "10.0.0.51", "10.0.0.52"]


def test_replicas_are_built_from_the_repository_first_when_there_is_one() -> None:
    with_repository = patroni.patroni_config(kit())["postgresql"]
    without = patroni.patroni_config(kit(pgbackrest_stanza="", restore_command=""))["postgresql"]

    assert with_repository["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert "--stanza=kit" in with_repository["pgbackrest"]["command"]
    assert with_repository["recovery_conf"]["restore_command"].startswith("pgbackrest")
    assert without["create_replica_methods"] == ["basebackup"]
    assert "recovery_conf" not in without


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"ttl": 15, "loop_wait": 5, "retry_timeout": 7}, "loop_wait + 2 x retry_timeout"),
        ({"loop_wait": 0}, "loop_wait"),
        ({"synchronous_mode": "yes"}, "synchronous_mode"),
        ({"etcd_hosts": []}, "etcd_hosts"),
    ],
)
def test_a_configuration_patroni_would_run_badly_with_is_refused_by_name(
    overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(patroni.PatroniConfigError, match=re.escape(named)):
        patroni.patroni_config(kit(**overrides))


def test_booleans_become_postgresql_words() -> None:
    split = patroni.patroni_parameters({"hot_standby_feedback": True, "fsync": False})
    assert split["local"] == {"hot_standby_feedback": "on", "fsync": "off"}
