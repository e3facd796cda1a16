"""The data tier: PostgreSQL primary and streaming replicas behind each node's PgBouncer."""

from __future__ import annotations

import base64
import textwrap
import time
import uuid
from collections import Counter

import pytest
import requests
import testinfra
from conftest import INVENTORY, get_host, host_vars, run_playbook, secret, superuser_sql

LB_URL = str(host_vars(INVENTORY.get_hosts("lb")[0])["local_stack_lb_url"])
PRIMARY = INVENTORY.get_hosts("db_primary")[0]
REPLICAS = sorted(INVENTORY.get_hosts("db_replicas"))
APP_NODES = sorted(INVENTORY.get_hosts("app"))
BOUNCERS = APP_NODES + sorted(INVENTORY.get_hosts("workers"))


def slot(name: str) -> str:
    return name.lower().replace("-", "_")


def env_value(host: testinfra.host.Host, name: str) -> str:
    env = host.check_output("cat /etc/kit-app/env")
    return next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith(name + "="))


@pytest.fixture(scope="module")
def primary() -> testinfra.host.Host:
    return get_host(PRIMARY)


def test_every_replica_streams_from_the_primary(primary: testinfra.host.Host) -> None:
    rows = superuser_sql(
        primary, "SELECT application_name || '|' || state FROM pg_stat_replication ORDER BY 1"
    ).splitlines()
    # Patroni names the replication connection after the member, and its slot after the
    # member with underscores.
    assert rows == [f"{name}|streaming" for name in REPLICAS]
    slots = superuser_sql(
        primary, "SELECT slot_name || '|' || active FROM pg_replication_slots ORDER BY 1"
    ).splitlines()
    assert slots == [f"{slot(name)}|true" for name in REPLICAS]


def test_every_network_connection_to_postgresql_is_verified_tls(
    primary: testinfra.host.Host,
) -> None:
    """pg_stat_ssl on the primary: every client and replication connection is TLS, and each
    presented its host's certificate from the kit's CA (subject: the inventory name)."""
    # A server connection from every PgBouncer: one query through each node's own.
    password = secret("postgresql_app_password")
    for name in BOUNCERS:
        through = get_host(name).run(
            "PGPASSWORD=%s psql -XAtq 'host=127.0.0.1 port=6432 dbname=kit user=kit_app'"
            " -c 'SELECT 1'",
            password,
        )
        assert through.rc == 0, f"{name}: {through.stderr}"
    rows = superuser_sql(
        primary,
        "SELECT a.backend_type || '|' || s.ssl || '|' || coalesce(s.client_dn, '')"
        " FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
        " WHERE a.client_addr IS NOT NULL ORDER BY 1",
    ).splitlines()
    assert rows
    seen: dict[str, set[str]] = {}
    for row in rows:
        kind, ssl, dn = row.split("|")
        assert ssl == "true", row
        assert dn.startswith("/CN="), row
        seen.setdefault(kind, set()).add(dn.removeprefix("/CN="))
    assert seen["walsender"] == set(REPLICAS)
    assert seen["client backend"] >= set(BOUNCERS)
    for name in BOUNCERS:
        config = get_host(name).check_output(
            "runuser -u postgres -- psql -XAtq -p 6432 -d pgbouncer -c 'SHOW CONFIG'"
        )
        assert "server_tls_sslmode|verify-full|" in config, name


def test_a_certificate_from_another_ca_is_refused(primary: testinfra.host.Host) -> None:
    """From an admitted address, with the right password: a client certificate the kit's
    CA did not sign is refused, and so is a client with none."""
    node = get_host(APP_NODES[0])
    made = node.run(
        "set -e; d=$(mktemp -d); cd $d;"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=other-ca -keyout ca.key -out ca.crt 2>/dev/null;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        " -subj /CN=%s -keyout client.key -out client.csr 2>/dev/null;"
        " openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1"
        " -out client.crt 2>/dev/null; chmod 600 client.key; echo $d",
        APP_NODES[0],
    )
    assert made.rc == 0, made.stderr
    other = made.stdout.strip()
    address = host_vars(PRIMARY)["private_ip"]
    attempts = {
        "kit": "sslcert=/etc/ssl/kit/host.crt sslkey=/etc/ssl/private/kit-host.key",
        "other": f"sslcert={other}/client.crt sslkey={other}/client.key",
        "none": "sslcert=/nonexistent sslkey=/nonexistent",
    }
    results = {
        kind: node.run(
            "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -XAtq %s -c 'SELECT 1'",
            secret("postgresql_app_password"),
            f"host={address} port=5432 dbname=kit user=kit_app sslmode=verify-full"
            f" sslrootcert=/etc/ssl/kit/ca.crt {tls}",
        )
        for kind, tls in attempts.items()
    }
    node.run("rm -rf %s", other)
    assert results["kit"].rc == 0, results["kit"].stderr
    for kind in ("other", "none"):
        assert results[kind].rc != 0, kind
        assert "certificate" in results[kind].stderr or "unknown ca" in results[kind].stderr, (
            kind,
            results[kind].stderr,
        )


def test_row_inserted_on_the_primary_is_visible_on_each_replica(
    primary: testinfra.host.Host,
) -> None:
    name = f"lag-{uuid.uuid4()}"
    replicas = {replica_name: get_host(replica_name) for replica_name in REPLICAS}
    written = time.monotonic()
    superuser_sql(primary, f"INSERT INTO items (name) VALUES ('{name}')")
    for replica_name, replica in replicas.items():
        deadline = written + 10
        while time.monotonic() < deadline:
            if superuser_sql(replica, f"SELECT count(*) FROM items WHERE name = '{name}'") == "1":
                break
            time.sleep(0.02)
        seen = time.monotonic() - written
        assert superuser_sql(replica, f"SELECT count(*) FROM items WHERE name = '{name}'") == "1"
        # PostgreSQL's own measure: from the primary's flush to the replica's replay of it
        # (reported by the replica right after it replays).
        replay = ""
        for _ in range(40):
            replay = superuser_sql(
                primary,
                "SELECT (extract(epoch FROM replay_lag) * 1000)::numeric(10, 3)"
                f" FROM pg_stat_replication WHERE application_name = '{replica_name}'",
            )
            if replay:
                break
            time.sleep(0.05)
        print(
            f"{replica_name}: replay_lag {replay} ms; seen by the test's first poll after"
            f" {seen * 1000:.0f} ms"
        )


def test_row_written_through_the_app_is_read_back_through_the_replica() -> None:
    name = f"item-{uuid.uuid4()}"
    created = requests.post(f"{LB_URL}/items", json={"name": name}, timeout=10)
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["name"] == name
    # Read through the lb: whichever node serves it reads through its own PgBouncer's
    # read-only database, which points at a replica.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = requests.get(f"{LB_URL}/items", params={"name": name}, timeout=10).json()
        if listed["items"]:
            break
        time.sleep(0.05)
    assert [row["id"] for row in listed["items"]] == [item["id"]]
    for node in APP_NODES:
        assert env_value(get_host(node), "KIT_DATABASE_READ_URL").endswith("/kit_ro")
    for replica in REPLICAS:
        assert (
            superuser_sql(get_host(replica), f"SELECT name FROM items WHERE id = {item['id']}")
            == name
        )


def router_states(node: str, backend: str) -> dict[str, str]:
    stat = get_host(node).check_output(
        "echo 'show stat' | socat stdio /run/kit-pgrouter/admin.sock"
    )
    return {
        line.split(",")[1]: line.split(",")[17]
        for line in stat.splitlines()
        if line.startswith(f"{backend},") and line.split(",")[1] not in ("FRONTEND", "BACKEND")
    }


def test_each_node_routes_writes_to_the_leader_and_reads_to_the_replicas() -> None:
    """PgBouncer's two databases go through the node's router: kit to the one member whose
    Patroni answers /primary, kit_ro to the replicas (each checked UP, the primary DOWN)."""
    for node in BOUNCERS:
        rows = get_host(node).check_output(
            "runuser -u postgres -- psql -XAtq -p 6432 -d pgbouncer -c 'SHOW DATABASES'"
        )
        ports = {line.split("|")[0]: line.split("|")[2] for line in rows.splitlines()}
        assert (ports["kit"], ports["kit_ro"]) == ("5000", "5001"), ports
        assert router_states(node, "kit_primary") == {
            PRIMARY: "UP",
            **{name: "DOWN" for name in REPLICAS},
        }
        assert router_states(node, "kit_replicas") == {
            PRIMARY: "DOWN",
            **{name: "UP" for name in REPLICAS},
        }


def test_no_request_fails_after_pgbouncer_restarts() -> None:
    """A restart of PgBouncer (a restore, a changed setting) closes every client connection
    the app's workers hold idle in their pools: none is handed to a request afterwards."""
    for node in APP_NODES:
        get_host(node).check_output("systemctl restart pgbouncer.service")
    codes = Counter(
        requests.get(f"{LB_URL}/items", timeout=10).status_code for _ in range(40)
    ) + Counter(
        requests.post(
            f"{LB_URL}/items", json={"name": f"after-restart-{n}"}, timeout=10
        ).status_code
        for n in range(40)
    )
    assert codes == Counter({200: 40, 201: 40})


def test_a_write_through_the_read_only_database_is_refused() -> None:
    node = get_host(APP_NODES[0])
    url = env_value(node, "KIT_DATABASE_READ_URL")
    write = node.run("psql -XAtq %s -c %s", url, "INSERT INTO items (name) VALUES ('nope')")
    assert write.rc != 0
    assert "cannot execute INSERT in a read-only transaction" in write.stderr


CLIENTS = 2000
LOAD = textwrap.dedent(
    """
    import asyncio, sys
    import psycopg

    DSN, CLIENTS = sys.argv[1], int(sys.argv[2])

    async def client(ready, go, errors):
        try:
            conn = await psycopg.AsyncConnection.connect(
                DSN, autocommit=True, prepare_threshold=None
            )
        except Exception as error:
            errors.append(f"connect: {error}")
            ready.release()
            return
        ready.release()
        await go.wait()
        try:
            async with conn:
                for _ in range(3):
                    await conn.execute("SELECT pg_sleep(0.01)")
        except Exception as error:
            errors.append(f"query: {error}")

    async def main():
        ready, go, errors = asyncio.Semaphore(0), asyncio.Event(), []
        tasks = [asyncio.create_task(client(ready, go, errors)) for _ in range(CLIENTS)]
        for _ in range(CLIENTS):
            await ready.acquire()
        print("connected", CLIENTS - len(errors), flush=True)
        go.set()
        await asyncio.gather(*tasks)
        print("errors", len(errors))
        for error in errors[:5]:
            print(error)

    asyncio.run(main())
    """
)


def test_2000_concurrent_clients_through_one_pgbouncer(primary: testinfra.host.Host) -> None:
    node_name = APP_NODES[0]
    node = get_host(node_name)
    node_ip = str(host_vars(node_name)["private_ip"])
    pool = int(host_vars(node_name).get("pgbouncer_default_pool_size", 10))
    reserve = int(host_vars(node_name).get("pgbouncer_reserve_pool_size", 2))
    # The primary counts the server connections that come from this node while the load runs.
    sampler = primary.run(
        "nohup sh -c 'for i in $(seq 600); do runuser -u postgres -- psql -XAtq -c "
        "\"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '\\''%s'\\''\"; "
        "sleep 0.05; done' > /tmp/kit-from-node.txt 2>&1 &",
        node_ip,
    )
    assert sampler.rc == 0, sampler.stderr
    script = base64.b64encode(LOAD.encode()).decode()
    run = node.run(
        "echo %s | base64 -d > /tmp/kit-load.py && ulimit -n 8192 && "
        "/srv/kit-app/current/venv/bin/python /tmp/kit-load.py %s %s",
        script,
        env_value(node, "KIT_DATABASE_URL"),
        str(CLIENTS),
    )
    primary.run("pkill -f 'seq 600' || true")
    assert run.rc == 0, run.stdout + run.stderr
    assert f"connected {CLIENTS}" in run.stdout, run.stdout
    assert "errors 0" in run.stdout, run.stdout
    counts = [int(line) for line in primary.check_output("cat /tmp/kit-from-node.txt").split()]
    print(f"server connections from {node_name} during the load: max {max(counts)}")
    assert counts, "the primary was not sampled"
    assert max(counts) <= pool + reserve


def test_the_migrate_command_finishes_cleanly_when_up_to_date() -> None:
    """The command the app role runs on every converge: it reports "up to date" on the
    converged stack and leaves nothing behind that would hold the interpreter at exit (a
    connection pool's threads cost 20 s per run on Debian 13's Python)."""
    node = get_host(INVENTORY.get_hosts("app")[0])
    # As the role runs it: the owner, through the node's PgBouncer.
    owner = f"postgresql://kit_owner:{secret('postgresql_owner_password')}@127.0.0.1:6432/kit"
    result = node.run(
        "KIT_DATABASE_URL=%s timeout 60 /srv/kit-app/current/venv/bin/kit-app-migrate", owner
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "up to date"
    assert result.stderr == "", result.stderr


def test_the_app_roles_carry_their_timeouts_through_pgbouncer(
    primary: testinfra.host.Host,
) -> None:
    """Set on the roles, the limits hold on every server connection PgBouncer opens for the
    app and read-only users; the owner (migrations) has none."""
    node = get_host(APP_NODES[0])
    query = (
        "SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')"
        " || ' ' || current_setting('idle_in_transaction_session_timeout')"
    )
    for name in ("KIT_DATABASE_URL", "KIT_DATABASE_READ_URL"):
        shown = node.check_output("psql -XAtq %s -c %s", env_value(node, name), query)
        assert shown == "10min 10s 1min", name
    owner = superuser_sql(
        primary,
        "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
        " WHERE r.rolname = 'kit_owner'",
    )
    assert owner == "0"


def test_a_setting_that_needs_a_restart_restarts_the_primary_only_when_asked(
    primary: testinfra.host.Host,
) -> None:
    def started() -> str:
        return superuser_sql(primary, "SELECT pg_postmaster_start_time()")

    def files() -> str:
        return superuser_sql(primary, "SHOW max_files_per_process")

    before = started()
    setting = '{"postgresql_settings": {"max_files_per_process": 1001}}'
    # The database hosts only, as an operator changing a PostgreSQL setting would run it.
    only_db = ("site.yml", "--tags", "postgresql", "--limit", "db")
    try:
        plain = run_playbook(*only_db, "-e", setting)
        assert plain.returncode == 0, plain.stdout[-3000:]
        assert "needs a restart for" in plain.stdout
        assert started() == before
        assert files() == "1000"
        pending = "SELECT pending_restart FROM pg_settings WHERE name = 'max_files_per_process'"
        assert superuser_sql(primary, pending) == "t"

        asked = run_playbook(*only_db, "-e", setting, "-e", "postgresql_restart_primary=true")
        assert asked.returncode == 0, asked.stdout[-3000:]
        assert started() != before
        assert files() == "1001"
    finally:
        back = run_playbook(*only_db, "-e", "postgresql_restart_primary=true")
    assert back.returncode == 0, back.stdout[-3000:]
    assert files() == "1000"
    # PgBouncer reconnected to the restarted primary: writes go through again.
    written = requests.post(f"{LB_URL}/items", json={"name": f"after-{uuid.uuid4()}"}, timeout=10)
    assert written.status_code == 201, written.text


def streaming_replicas(primary: testinfra.host.Host) -> set[str]:
    rows = superuser_sql(
        primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
    )
    return set(rows.split())


def wait_streaming(primary: testinfra.host.Host, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while name not in streaming_replicas(primary) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert name in streaming_replicas(primary), streaming_replicas(primary)


def replica_shows_a_new_row(primary: testinfra.host.Host, replica: testinfra.host.Host) -> bool:
    name = f"rebuilt-{uuid.uuid4()}"
    superuser_sql(primary, f"INSERT INTO items (name) VALUES ('{name}')")
    deadline = time.monotonic() + 10
    query = f"SELECT count(*) FROM items WHERE name = '{name}'"
    while superuser_sql(replica, query) != "1" and time.monotonic() < deadline:
        time.sleep(0.1)
    return superuser_sql(replica, query) == "1"


def cluster_unit(host: testinfra.host.Host) -> str:
    return host.check_output(
        "systemctl list-units --all --plain --no-legend 'patroni@*.service' | cut -d' ' -f1"
    )


def test_a_replica_whose_slot_was_lost_is_rebuilt_by_db_rebuild_replica(
    primary: testinfra.host.Host,
) -> None:
    """The replica stopped past the primary's cap on the WAL its slot keeps (lowered to 1 MB
    for the test, and no WAL kept by wal_keep_size): PostgreSQL invalidates the slot, which
    no longer keeps any WAL for the replica. Started again, the replica catches up from the
    WAL archive and streams through the slot. PostgreSQL 17 keeps the slot invalidated
    (nothing holds WAL for the replica): db_rebuild_replica.yml drops it and Patroni creates
    it again. PostgreSQL 15 makes the slot whole once the replica streams, and nothing is
    dropped. Either way the replica is built again from the backup repository, not the
    leader (the site.yml test after this one builds one from a base backup of the leader):
    it streams through a slot that reserves its WAL and shows a row written on the primary."""
    name = REPLICAS[-1]
    replica = get_host(name)
    unit = cluster_unit(replica)
    wal_status = f"SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{slot(name)}'"
    replica.check_output(f"systemctl stop {unit}")
    try:
        # Patroni keeps wal_keep_size of WAL for any replica: none kept for the test either.
        superuser_sql(primary, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        superuser_sql(primary, "ALTER SYSTEM SET wal_keep_size = 0")
        superuser_sql(primary, "SELECT pg_reload_conf()")
        for _ in range(3):
            superuser_sql(primary, f"INSERT INTO items (name) VALUES ('wal-{uuid.uuid4()}')")
            superuser_sql(primary, "SELECT pg_switch_wal()")
            superuser_sql(primary, "CHECKPOINT")
        assert superuser_sql(primary, wal_status) == "lost"
    finally:
        superuser_sql(primary, "ALTER SYSTEM RESET max_slot_wal_keep_size")
        superuser_sql(primary, "ALTER SYSTEM RESET wal_keep_size")
        superuser_sql(primary, "SELECT pg_reload_conf()")
        replica.check_output(f"systemctl start {unit}")
    wait_streaming(primary, name, timeout=120)
    invalidation_lasts = int(superuser_sql(primary, "SHOW server_version_num")) >= 170000
    if invalidation_lasts:
        reason = wal_status.replace("wal_status", "invalidation_reason")
        assert superuser_sql(primary, reason) == "wal_removed"
    else:
        assert superuser_sql(primary, wal_status) == "reserved"

    result = run_playbook(
        "db_rebuild_replica.yml", "-e", f"replica={name}", "-e", "source=repository"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    restored = output[
        output.index("TASK [postgresql : Restore the member from the backup repository") :
    ]
    assert f"changed: [{name}]" in restored.split("TASK [")[1]
    copied = output[output.index("TASK [postgresql : Copy the leader with pg_basebackup") :]
    assert f"skipping: [{name}]" in copied.split("TASK [")[1]
    dropped = output[output.index("TASK [postgresql : Drop the replicas' invalidated slots") :]
    drops = dropped.split("TASK [")[1].count(f"changed: [{PRIMARY}] => (item={slot(name)})")
    assert drops == (1 if invalidation_lasts else 0)
    wait_streaming(primary, name)
    assert superuser_sql(primary, wal_status) == "reserved"
    active = f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot(name)}'"
    assert superuser_sql(primary, active) == "t"
    assert replica_shows_a_new_row(primary, replica)


def test_a_replica_left_empty_by_a_failed_base_backup_is_built_by_the_next_run(
    primary: testinfra.host.Host,
) -> None:
    """A base backup that fails half-way leaves the data directory empty, and the cluster
    cannot start: the next site.yml run builds the replica again instead of failing."""
    name = REPLICAS[-1]
    replica = get_host(name)
    unit = cluster_unit(replica)
    replica.check_output(f"systemctl stop {unit}")
    replica.check_output("find /var/lib/postgresql/*/main -mindepth 1 -delete")
    result = run_playbook("site.yml", "--tags", "postgresql", "--limit", "db")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    wait_streaming(primary, name)
    assert replica_shows_a_new_row(primary, replica)
