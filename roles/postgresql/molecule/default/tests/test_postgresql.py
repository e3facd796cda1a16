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


# The host's own certificate from the kit's CA (the pki role), which every network client
# presents, and the CA it checks the server against.
TLS = (
    "sslrootcert=/etc/ssl/kit/ca.crt sslcert=/etc/ssl/kit/host.crt"
    " sslkey=/etc/ssl/private/kit-host.key"
)


def net_sql(
    host, address: str, user: str, sql: str, sslmode: str = "verify-full", tls: str = TLS
) -> Any:
    """Run SQL as an application role over TCP, as a client on the network would."""
    return host.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -XAtq -v ON_ERROR_STOP=1 %s -c %s",
        PASSWORDS.get(user, "wrong"),
        f"host={address} port=5432 dbname=kit user={user} sslmode={sslmode} {tls}",
        sql,
    )


def test_both_clusters_run_under_patroni_from_the_kit_settings(
    primary, replica, version: int
) -> None:
    for host in (primary, replica):
        assert host.service(f"patroni@{version}-main").is_running
        assert host.service(f"patroni@{version}-main").is_enabled
        # Patroni alone starts PostgreSQL: Debian's own unit for the cluster is masked.
        assert not host.service(f"postgresql@{version}-main").is_enabled
    assert local_sql(primary, "SHOW server_version_num")[:2] == str(version)
    # 1024 MiB: a quarter in shared buffers, three quarters as the cache estimate.
    settings = local_sql(
        primary,
        "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name)"
        " FROM pg_settings WHERE name IN ('shared_buffers', 'effective_cache_size',"
        " 'max_connections', 'password_encryption', 'ssl', 'wal_level')",
    )
    assert settings == (
        "effective_cache_size=983048kB max_connections=200 password_encryption=scram-sha-256"
        " shared_buffers=327688kB ssl=on wal_level=replica"
    )


def test_every_replica_streams_through_its_own_slot(primary) -> None:
    rows = local_sql(
        primary,
        "SELECT application_name, state, client_addr FROM pg_stat_replication",
    )
    assert rows == f"kit-molecule-pg-2|streaming|{REPLICA_IP}"
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


def test_replication_is_verified_tls_with_the_replicas_certificate(primary, replica) -> None:
    """The replica checks the primary's certificate and address, and presents its own."""
    row = local_sql(
        primary,
        "SELECT s.ssl, s.client_dn FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
    )
    assert row == "t|/CN=kit-molecule-pg-2"
    assert "sslmode=verify-full" in local_sql(replica, "SHOW primary_conninfo")


def test_a_client_without_a_kit_certificate_is_refused(primary) -> None:
    # No certificate at all: the password alone is not enough.
    bare = net_sql(
        primary, PRIMARY_IP, "kit_app", "SELECT 1", tls="sslrootcert=/etc/ssl/kit/ca.crt"
    )
    assert bare.rc != 0
    assert "certificate" in bare.stderr
    # A certificate from another CA, with the right password.
    made = primary.run(
        "set -e; d=$(mktemp -d); cd $d;"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=other-ca -keyout ca.key -out ca.crt 2>/dev/null;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        " -subj /CN=kit-molecule-pg-1 -keyout client.key -out client.csr 2>/dev/null;"
        " openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1"
        " -out client.crt 2>/dev/null; chmod 600 client.key; echo $d"
    )
    assert made.rc == 0, made.stderr
    other = made.stdout.strip()
    foreign = net_sql(
        primary,
        PRIMARY_IP,
        "kit_app",
        "SELECT 1",
        tls=f"sslrootcert=/etc/ssl/kit/ca.crt sslcert={other}/client.crt sslkey={other}/client.key",
    )
    assert foreign.rc != 0
    assert "certificate" in foreign.stderr or "unknown ca" in foreign.stderr, foreign.stderr
    # The kit's CA does not vouch for the address of a server it did not certify: a client
    # checking the address refuses the replica's certificate presented as the primary's.
    wrong_name = primary.run(
        "PGPASSWORD=molecule-app PGCONNECT_TIMEOUT=5 psql -XAtq %s -c 'SELECT 1'",
        f"host={PRIMARY_IP} hostaddr={REPLICA_IP} port=5432 dbname=kit user=kit_app"
        f" sslmode=verify-full {TLS}",
    )
    assert wrong_name.rc != 0
    assert "does not match host name" in wrong_name.stderr, wrong_name.stderr


def test_application_roles_cannot_reach_other_databases(primary) -> None:
    other = primary.run(
        "PGPASSWORD=molecule-app psql -XAtq %s -c 'SELECT 1'",
        f"host={PRIMARY_IP} dbname=postgres user=kit_app sslmode=verify-full {TLS}",
    )
    assert other.rc != 0


def test_a_bad_setting_is_refused_by_the_checker(primary, version: int) -> None:
    bad = primary.run(
        "printf \"shared_buffers = '12xyz'\\n\" > /tmp/bad.conf"
        " && /usr/local/sbin/kit-postgresql-check-conf /tmp/bad.conf"
    )
    assert bad.rc != 0
    assert "invalid value" in bad.stderr
    conf = f"/etc/postgresql/{version}/main/kit-settings.conf"
    good = primary.run(f"/usr/local/sbin/kit-postgresql-check-conf {conf}")
    assert good.rc == 0, good.stderr
