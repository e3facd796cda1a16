"""pgBackRest on a PostgreSQL primary and a repository host, over TLS from the kit's CA."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import testinfra

testinfra_hosts = ["kit-molecule-pgbr-repo"]
DB = "kit-molecule-pgbr-db"


@pytest.fixture(scope="module")
def db(request: pytest.FixtureRequest) -> Any:
    return testinfra.get_host(
        f"ansible://{DB}", ansible_inventory=request.config.option.ansible_inventory
    )


def sql(host: Any, query: str) -> str:
    out = host.run("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d kit -c %s", query)
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def info(host: Any) -> dict[str, Any]:
    out = host.check_output("runuser -u pgbackrest -- pgbackrest --stanza=kit --output=json info")
    return json.loads(out)[0]


def test_the_first_converge_took_a_full_backup(host: Any) -> None:
    stanza = info(host)
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert [b["type"] for b in stanza["backup"]] == ["full"]
    assert host.file("/var/lib/pgbackrest/backup/kit").is_directory
    for timer in ("kit-pgbackrest-full.timer", "kit-pgbackrest-diff.timer"):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running


def test_a_switched_wal_segment_reaches_the_repository(host: Any, db: Any) -> None:
    sql(db, "CREATE TABLE IF NOT EXISTS archived (v text)")
    sql(db, "INSERT INTO archived VALUES ('x')")
    segment = sql(db, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = sql(db, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if last >= segment:
            break
        time.sleep(0.5)
    assert last >= segment
    # Attempts may have failed before the repository existed (archive_timeout switches a
    # segment while the database host converges first): the latest one succeeded.
    latest_ok = "SELECT last_failed_time IS NULL OR last_archived_time > last_failed_time"
    assert sql(db, f"{latest_ok} FROM pg_stat_archiver") == "t"
    archive = info(host)["archive"][0]
    assert archive["max"] >= segment


def test_the_repository_admits_the_database_host_and_refuses_another_ca(host: Any, db: Any) -> None:
    """Through the repository's TLS server, as archive-push and restores reach it: the
    database host's certificate from the kit's CA is admitted; a certificate from another CA,
    for the same name, is refused."""
    for node in (host, db):
        assert node.service("kit-pgbackrest.service").is_running
    admitted = db.run("runuser -u postgres -- pgbackrest --stanza=kit repo-ls archive/kit")
    assert admitted.rc == 0, admitted.stdout + admitted.stderr
    made = db.run(
        "set -e; d=$(mktemp -d); cd $d;"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=other-ca -keyout ca.key -out ca.crt 2>/dev/null;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        " -subj /CN=kit-molecule-pgbr-db -keyout client.key -out client.csr 2>/dev/null;"
        " openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1"
        " -out client.crt 2>/dev/null; chmod 755 $d; chmod 644 client.key; echo $d"
    )
    assert made.rc == 0, made.stderr
    other = made.stdout.strip()
    refused = db.run(
        "runuser -u postgres -- pgbackrest --stanza=kit --repo1-host-cert-file=%s/client.crt"
        " --repo1-host-key-file=%s/client.key repo-ls archive/kit",
        other,
        other,
    )
    db.run("rm -rf %s", other)
    assert refused.rc != 0, refused.stdout
