"""The postgresql role on a primary and one streaming replica."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import testinfra

PRIMARY_IP = "172.30.214.11"
REPLICA_IP = "172.30.214.12"
PASSWORDS = {"kit_owner": "molecule-owner", "kit_app": "molecule-app", "kit_ro": "molecule-ro"}

testinfra_hosts = ["kit-molecule-pg-1"]
# Debian's PostgreSQL on each release the kit supports.
VERSIONS = {"12": 15, "13": 17}


@pytest.fixture(scope="module")
def primary(host: Any) -> Any:
    return host


@pytest.fixture(scope="module")
def replica(request: pytest.FixtureRequest) -> Any:
    return testinfra.get_host(
        "ansible://kit-molecule-pg-2", ansible_inventory=request.config.option.ansible_inventory
    )


@pytest.fixture(scope="module")
def version(host: Any) -> int:
    return VERSIONS[host.system_info.release.split(".")[0]]


def local_sql(host, sql: str) -> str:
    """Run SQL as the postgres superuser over the local socket; return unaligned output."""
    cmd = host.run("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d kit -c %s", sql)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def net_sql(host, address: str, user: str, sql: str, sslmode: str = "require") -> Any:
    """Run SQL as an application role over TCP, as a client on the network would."""
    return host.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -XAtq -v ON_ERROR_STOP=1 "
        "'host=%s port=5432 dbname=kit user=%s sslmode=%s' -c %s",
        PASSWORDS.get(user, "wrong"),
        address,
        user,
        sslmode,
        sql,
    )


def test_both_clusters_run_from_the_kit_settings(primary, replica, version: int) -> None:
    for host in (primary, replica):
        assert host.service(f"postgresql@{version}-main").is_running
        assert host.service(f"postgresql@{version}-main").is_enabled
    assert local_sql(primary, "SHOW server_version_num")[:2] == str(version)
    # 1024 MiB: a quarter in shared buffers, three quarters as the cache estimate.
    settings = local_sql(
        primary,
        "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name)"
        " FROM pg_settings WHERE name IN ('shared_buffers', 'effective_cache_size',"
        " 'max_connections', 'password_encryption', 'ssl', 'wal_level')",
    )
    assert settings == (
        "effective_cache_size=983048kB max_connections=100 password_encryption=scram-sha-256"
        " shared_buffers=327688kB ssl=on wal_level=replica"
    )


def test_every_replica_streams_through_its_own_slot(primary) -> None:
    rows = local_sql(
        primary,
        "SELECT application_name, state, client_addr FROM pg_stat_replication",
    )
    assert rows == f"kit_molecule_pg_2|streaming|{REPLICA_IP}"
    slots = local_sql(primary, "SELECT slot_name, slot_type, active FROM pg_replication_slots")
    assert slots == "kit_molecule_pg_2|physical|t"


def test_row_written_on_the_primary_is_read_on_the_replica(primary) -> None:
    name = f"row-{uuid.uuid4()}"
    create = net_sql(
        primary, PRIMARY_IP, "kit_owner", "CREATE TABLE IF NOT EXISTS t (v text PRIMARY KEY)"
    )
    assert create.rc == 0, create.stderr
    insert = net_sql(primary, PRIMARY_IP, "kit_app", f"INSERT INTO t VALUES ('{name}')")
    assert insert.rc == 0, insert.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = net_sql(primary, REPLICA_IP, "kit_ro", f"SELECT v FROM t WHERE v = '{name}'")
        if seen.stdout.strip() == name:
            break
        time.sleep(0.1)
    assert seen.stdout.strip() == name, seen.stderr


def test_replica_refuses_writes(primary) -> None:
    write = net_sql(primary, REPLICA_IP, "kit_app", "INSERT INTO t VALUES ('x')")
    assert write.rc != 0
    assert "read-only transaction" in write.stderr


def test_readonly_role_cannot_write_even_on_the_primary(primary) -> None:
    write = net_sql(primary, PRIMARY_IP, "kit_ro", "INSERT INTO t VALUES ('from-ro')")
    assert write.rc != 0
    assert "permission denied" in write.stderr


def test_only_scram_secrets_are_stored(primary) -> None:
    stored = local_sql(
        primary,
        "SELECT count(*) FROM pg_authid WHERE rolpassword IS NOT NULL"
        " AND rolpassword NOT LIKE 'SCRAM-SHA-256$%'",
    )
    assert stored == "0"
    wrong = net_sql(primary, PRIMARY_IP, "nobody", "SELECT 1")
    assert wrong.rc != 0


def test_network_clients_need_tls_and_an_admitted_address(primary, replica) -> None:
    plain = net_sql(primary, PRIMARY_IP, "kit_app", "SELECT 1", sslmode="disable")
    assert plain.rc != 0
    assert "no pg_hba.conf entry" in plain.stderr
    # The replica's host is not one of postgresql_client_groups: the primary turns it away.
    stranger = net_sql(replica, PRIMARY_IP, "kit_app", "SELECT 1")
    assert stranger.rc != 0
    assert "no pg_hba.conf entry" in stranger.stderr
    assert f'host "{REPLICA_IP}"' in stranger.stderr


def test_application_roles_cannot_reach_other_databases(primary) -> None:
    other = primary.run(
        "PGPASSWORD=molecule-app psql -XAtq 'host=%s dbname=postgres user=kit_app sslmode=require'"
        " -c 'SELECT 1'",
        PRIMARY_IP,
    )
    assert other.rc != 0


def test_a_bad_setting_is_refused_by_the_checker(primary, version: int) -> None:
    bad = primary.run(
        "printf \"shared_buffers = '12xyz'\\n\" > /tmp/bad.conf"
        " && /usr/local/sbin/kit-postgresql-check-conf /tmp/bad.conf"
    )
    assert bad.rc != 0
    assert "invalid value" in bad.stderr
    conf = f"/etc/postgresql/{version}/main/conf.d/50-kit.conf"
    good = primary.run(f"/usr/local/sbin/kit-postgresql-check-conf {conf}")
    assert good.rc == 0, good.stderr
