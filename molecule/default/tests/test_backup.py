"""Backups: pgBackRest's repository on the monitoring host, WAL archived from the primary,
and a point-in-time restore with ansible/db_restore.yml after which the replicas stream
again."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests
import testinfra
from conftest import INVENTORY, LB_URL, get_host, run_playbook, superuser_sql

PRIMARY = INVENTORY.get_hosts("db_primary")[0]
REPLICAS = sorted(INVENTORY.get_hosts("db_replicas"))
REPOSITORY = INVENTORY.get_hosts("monitoring")[0]


@pytest.fixture(scope="module")
def primary() -> testinfra.host.Host:
    return get_host(PRIMARY)


def info() -> dict[str, Any]:
    out = get_host(REPOSITORY).check_output(
        "runuser -u pgbackrest -- pgbackrest --stanza=kit --output=json info"
    )
    return json.loads(out)[0]


def test_the_repository_holds_a_full_backup_and_the_wal_since(primary) -> None:
    stanza = info()
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert "full" in [backup["type"] for backup in stanza["backup"]]
    # A write first: with nothing written since the last switch, pg_switch_wal() switches nothing.
    superuser_sql(primary, "CREATE TABLE IF NOT EXISTS archive_probe (at timestamptz)")
    superuser_sql(primary, "INSERT INTO archive_probe VALUES (clock_timestamp())")
    segment = superuser_sql(primary, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            superuser_sql(primary, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            >= segment
        ):
            break
        time.sleep(0.5)
    archiver = superuser_sql(
        primary,
        "SELECT last_archived_wal || '|' || (last_failed_time IS NULL"
        " OR last_archived_time > last_failed_time) FROM pg_stat_archiver",
    )
    assert archiver.split("|")[0] >= segment, superuser_sql(
        primary, "SELECT * FROM pg_stat_archiver"
    )
    row = superuser_sql(primary, "SELECT * FROM pg_stat_archiver")
    assert archiver.split("|")[1] == "true", f"the last archive attempt failed: {row}"
    assert info()["archive"][0]["max"] >= segment


def wait_streaming(primary: testinfra.host.Host, seconds: float = 120) -> list[str]:
    deadline = time.monotonic() + seconds
    rows: list[str] = []
    while time.monotonic() < deadline:
        rows = superuser_sql(
            primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
        ).split()
        if len(rows) == len(REPLICAS):
            break
        time.sleep(1)
    return sorted(rows)


def test_a_point_in_time_restore_brings_back_deleted_rows(primary) -> None:
    """Rows written, the time noted, the rows deleted and one more written: restored to the
    noted time, the rows are back, the later write is gone, the replicas stream the restored
    data, and the application serves again."""
    superuser_sql(
        primary,
        "CREATE TABLE IF NOT EXISTS restore_probe (v text NOT NULL,"
        " at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    superuser_sql(primary, "TRUNCATE restore_probe")
    superuser_sql(
        primary, "INSERT INTO restore_probe (v) SELECT 'kept-' || g FROM generate_series(1, 500) g"
    )
    target = superuser_sql(primary, "SELECT clock_timestamp()::text")
    time.sleep(1)
    superuser_sql(primary, "DELETE FROM restore_probe")
    superuser_sql(primary, "INSERT INTO restore_probe (v) VALUES ('after-target')")

    started = time.monotonic()
    run = run_playbook(
        "db_restore.yml", "-e", "db_restore_type=time", "-e", f"db_restore_target='{target}'",
        "-e", "db_restore_confirm=yes",
    )  # fmt: skip
    took = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    print(f"db_restore.yml to {target}: {took:.0f} s")

    counts = superuser_sql(
        primary,
        "SELECT count(*) FILTER (WHERE v LIKE 'kept-%') || '|'"
        " || count(*) FILTER (WHERE v = 'after-target') FROM restore_probe",
    )
    assert counts == "500|0"
    assert superuser_sql(primary, "SELECT pg_is_in_recovery()") == "f"
    # pgBackRest's recovery settings are gone from postgresql.auto.conf, which a replica's
    # base backup copies: a replica would stop replaying at the restore's target.
    auto = primary.file(
        superuser_sql(primary, "SHOW data_directory") + "/postgresql.auto.conf"
    ).content_string
    assert "recovery_target" not in auto
    assert "restore_command" not in auto

    assert wait_streaming(primary) == REPLICAS
    for name in REPLICAS:
        replica = get_host(name)
        assert superuser_sql(replica, "SELECT count(*) FROM restore_probe") == "500"
    # Writes go on, and reach the archive on the new timeline (db_restore.yml checked it).
    superuser_sql(primary, "INSERT INTO restore_probe (v) VALUES ('after-restore')")
    answer = requests.get(f"{LB_URL}/healthz", timeout=10)
    assert answer.status_code == 200


def system_id(host: testinfra.host.Host) -> str:
    """The cluster's system identifier, read in the postgres database (a fresh cluster has
    no other)."""
    return superuser_sql(host, "SELECT system_identifier FROM pg_control_system()", "postgres")


def test_a_restore_after_every_member_lost_its_data_brings_back_everything_archived(
    primary,
) -> None:
    """Every database host's disk is lost once the last write reached the archive (a lost
    primary alone is a failover: Patroni promotes a replica, and site.yml builds the host
    again from it). Nothing runs, the cluster's state in etcd names a system that is gone:
    db_restore.yml archives nothing, brings the repository's latest backup and the WAL
    since back on the primary, and the replicas stream the result."""
    superuser_sql(primary, "CREATE TABLE IF NOT EXISTS loss_probe (v text NOT NULL)")
    written = f"before-loss-{uuid.uuid4()}"
    superuser_sql(primary, f"INSERT INTO loss_probe VALUES ('{written}')")
    primary.check_output("runuser -u postgres -- pgbackrest --stanza=kit check")
    original = system_id(primary)
    data = superuser_sql(primary, "SHOW data_directory")
    version = superuser_sql(primary, "SHOW server_version_num")[:2]
    # Replicas first, so that none takes over from the stopped primary.
    for name in [*REPLICAS, PRIMARY]:
        get_host(name).check_output(
            f"systemctl stop patroni@{version}-main.service && find {data} -mindepth 1 -delete"
        )
    assert primary.check_output(f"ls -A {data}") == ""

    run = run_playbook(
        "db_restore.yml", "-e", "db_restore_type=latest", "-e", "db_restore_confirm=yes"
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    archived = output[output.index("TASK [Archive the primary's current WAL]") :]
    assert f"skipping: [{PRIMARY}]" in archived.split("TASK [")[1]

    assert system_id(primary) == original
    assert superuser_sql(primary, f"SELECT count(*) FROM loss_probe WHERE v = '{written}'") == "1"
    assert superuser_sql(primary, "SELECT pg_is_in_recovery()") == "f"
    assert wait_streaming(primary) == REPLICAS
    for name in REPLICAS:
        assert system_id(get_host(name)) == original
    assert requests.get(f"{LB_URL}/healthz", timeout=10).status_code == 200


def test_the_restore_is_refused_without_a_target_or_confirmation(primary) -> None:
    before = superuser_sql(primary, "SELECT system_identifier::text FROM pg_control_system()")
    missing = run_playbook(
        "db_restore.yml", "-e", "db_restore_type=time", "-e", "db_restore_confirm=yes"
    )
    assert missing.returncode != 0
    assert "db_restore_target" in missing.stdout
    unconfirmed = run_playbook(
        "db_restore.yml", "-e", "db_restore_type=latest", "-e", "db_restore_confirm=no"
    )
    assert unconfirmed.returncode != 0
    assert superuser_sql(primary, "SELECT pg_is_in_recovery()") == "f"
    assert (
        superuser_sql(primary, "SELECT system_identifier::text FROM pg_control_system()") == before
    )
