"""PgBouncer on an app node and its router, in front of a one-member Patroni cluster (no
replica: <db>_ro goes to the leader)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

testinfra_hosts = ["kit-molecule-pgb-app"]

SCENARIO = Path(__file__).resolve().parents[1]
PASSWORDS = {"kit_app": "molecule-app", "kit_ro": "molecule-ro", "kit_stats": "molecule-stats"}


def sql(host, database: str, user: str, query: str, password: str | None = None) -> Any:
    return host.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -XAtq -v ON_ERROR_STOP=1 "
        "'host=127.0.0.1 port=6432 dbname=%s user=%s' -c %s",
        password if password is not None else PASSWORDS.get(user, ""),
        database,
        user,
        query,
    )


def admin(host, command: str) -> str:
    out = host.run("runuser -u postgres -- psql -XAtq -p 6432 -d pgbouncer -c %s", command)
    assert out.rc == 0, out.stderr
    return out.stdout


def main_pid(host) -> str:
    return host.check_output("systemctl show --property=MainPID --value pgbouncer.service")


def converge(*extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["ANSIBLE_ROLES_PATH"] = str(SCENARIO.parents[2])
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if ephemeral and Path(ephemeral, "ansible.cfg").exists():
        env["ANSIBLE_CONFIG"] = str(Path(ephemeral, "ansible.cfg"))
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(SCENARIO / "converge.yml"),
            "--skip-tags",
            "cluster",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_listens_on_loopback_only(host) -> None:
    assert host.service("pgbouncer").is_running
    assert host.service("pgbouncer").is_enabled
    assert host.socket("tcp://127.0.0.1:6432").is_listening
    assert not host.socket("tcp://0.0.0.0:6432").is_listening
    assert not host.socket("tcp://172.30.215.12:6432").is_listening


def test_app_user_writes_through_pgbouncer_to_the_primary(host) -> None:
    out = sql(host, "kit", "kit_app", "SELECT inet_server_addr()")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "172.30.215.11"


def test_the_router_listens_on_loopback_and_checks_the_leader_over_tls(host) -> None:
    """kit-pgrouter: both ports on loopback only; the leader UP in the read-write backend
    (its Patroni answers /primary over TLS), and DOWN in the replicas' one, to which reads
    fall back to the leader."""
    assert host.service("kit-pgrouter").is_running
    for port in (5000, 5001):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    stat = host.check_output("echo 'show stat' | socat stdio /run/kit-pgrouter/admin.sock")
    states = {
        (line.split(",")[0], line.split(",")[1]): line.split(",")[17]
        for line in stat.splitlines()
        if line.startswith("kit_")
    }
    assert states[("kit_primary", "kit-molecule-pgb-db")] == "UP"
    assert states[("kit_replicas", "kit-molecule-pgb-db")] == "DOWN"
    read = sql(host, "kit_ro", "kit_ro", "SELECT inet_server_addr()")
    assert read.rc == 0, read.stderr
    assert read.stdout.strip() == "172.30.215.11"


def test_readonly_database_refuses_writes(host) -> None:
    read = sql(host, "kit_ro", "kit_ro", "SELECT 1")
    assert read.rc == 0, read.stderr
    write = sql(host, "kit_ro", "kit_ro", "CREATE TABLE t_from_ro (v int)")
    assert write.rc != 0
    assert "permission denied" in write.stderr
    # The app user is not admitted to the read-only database, nor the read-only user to
    # the read-write one.
    assert sql(host, "kit_ro", "kit_app", "SELECT 1").rc != 0
    assert sql(host, "kit", "kit_ro", "SELECT 1").rc != 0


def test_wrong_password_is_refused(host) -> None:
    out = sql(host, "kit", "kit_app", "SELECT 1", password="not-the-password")
    assert out.rc != 0
    assert "SASL authentication failed" in out.stderr


def test_no_password_is_kept_on_the_node(host) -> None:
    for password in [*PASSWORDS.values(), "molecule-owner"]:
        found = host.run("grep -rlF -- %s /etc/pgbouncer", password)
        assert found.rc == 1, found.stdout
    userlist = host.file("/etc/pgbouncer/userlist.txt")
    assert userlist.mode == 0o640
    assert userlist.user == "root"
    assert userlist.group == "postgres"
    secrets = [line for line in userlist.content_string.splitlines() if line.startswith('"kit')]
    assert len(secrets) == 4
    assert all('"SCRAM-SHA-256$4096:' in line for line in secrets)


def test_admin_console_by_peer_and_stats_user_by_scram(host) -> None:
    assert "kit_ro" in admin(host, "SHOW DATABASES")
    stats = sql(host, "pgbouncer", "kit_stats", "SHOW STATS_TOTALS")
    assert stats.rc == 0, stats.stderr
    # The stats user may look, not act.
    pause = sql(host, "pgbouncer", "kit_stats", "PAUSE")
    assert pause.rc != 0
    assert "admin access needed" in pause.stderr
    # Nobody logs in as postgres over TCP.
    assert sql(host, "pgbouncer", "postgres", "SHOW POOLS", password="").rc != 0


def test_pool_settings_and_open_file_limit(host) -> None:
    config = {
        line.split("|")[0]: line.split("|")[1] for line in admin(host, "SHOW CONFIG").splitlines()
    }
    assert config["pool_mode"] == "transaction"
    assert config["max_client_conn"] == "10000"
    assert config["default_pool_size"] == "10"
    assert config["max_db_connections"] == "20"
    assert config["query_wait_timeout"] == "30"
    assert config["server_tls_sslmode"] == "verify-full"
    limits = host.file(f"/proc/{main_pid(host)}/limits").content_string
    soft = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert int(soft.split()[3]) > 10000


def test_a_change_reloads_without_dropping_clients(host) -> None:
    pid = main_pid(host)
    # A client connected before the change, and still using the same connection after it:
    # psql runs the second query only once the change has landed (/tmp/kit-go).
    host.run("rm -f /tmp/kit-go /tmp/held.out /tmp/held.rc")
    host.run(
        "((echo 'SELECT 1;'; while [ ! -f /tmp/kit-go ]; do sleep 0.2; done; echo 'SELECT 2;')"
        " | PGPASSWORD=molecule-app psql -XAtq -v ON_ERROR_STOP=1"
        " 'host=127.0.0.1 port=6432 dbname=kit user=kit_app' > /tmp/held.out 2>&1;"
        " echo $? > /tmp/held.rc) > /dev/null 2>&1 &"
    )
    try:
        changed = converge("-e", '{"pgbouncer_default_pool_size": 7}')
        assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
        assert "Reload PgBouncer" in changed.stdout
        assert main_pid(host) == pid
        assert "default_pool_size|7|" in admin(host, "SHOW CONFIG")
        host.run("touch /tmp/kit-go")
        host.run("for i in $(seq 100); do test -s /tmp/held.rc && break; sleep 0.1; done")
        assert host.file("/tmp/held.rc").content_string.strip() == "0"
        assert host.file("/tmp/held.out").content_string.split() == ["1", "2"]
    finally:
        host.run("touch /tmp/kit-go")
        restored = converge()
        assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert "default_pool_size|10|" in admin(host, "SHOW CONFIG")


def test_a_bad_setting_is_refused_before_it_replaces_the_config(host) -> None:
    pid = main_pid(host)
    before = host.file("/etc/pgbouncer/pgbouncer.ini").sha256sum
    bad = converge("-e", '{"pgbouncer_settings": {"pool_mode": "no-such-mode"}}')
    assert bad.returncode != 0
    assert "failed to validate" in bad.stdout + bad.stderr
    assert 'invalid value "no-such-mode" for parameter pool_mode' in bad.stdout + bad.stderr
    assert host.file("/etc/pgbouncer/pgbouncer.ini").sha256sum == before
    assert main_pid(host) == pid
    assert sql(host, "kit", "kit_app", "SELECT 1").rc == 0
