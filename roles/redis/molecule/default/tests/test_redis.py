"""The redis role alone: the sessions, cache and queues instances, their users and policies. The
scenario runs Valkey where Debian carries it (Debian 13) and Redis elsewhere (molecule.yml);
the full topology runs Redis."""

from __future__ import annotations

import time

import pytest

SESSIONS, CACHE, QUEUES = 6379, 6381, 6380
NAMES = {SESSIONS: "sessions", CACHE: "cache", QUEUES: "queues"}
APP = ("app", "molecule-app")
WORKER = ("worker", "molecule-worker")
ADMIN = ("admin", "molecule-admin")
# TLS only, to the address the host's certificate names (private_ip, molecule.yml), checked
# against the kit's CA.
TLS = "--tls --cacert /etc/ssl/kit/ca.crt -h 127.0.0.1"


def server_of(host) -> str:
    """The server the scenario asks for on this host's release."""
    return "valkey" if host.system_info.release.split(".")[0] == "13" else "redis"


@pytest.fixture(scope="module")
def server(host) -> str:
    return server_of(host)


def cli(host, port: int, *args: str, user: tuple[str, str] = APP) -> str:
    """Run the server's CLI as `user`; returns its output (errors are output too, as the
    server says them)."""
    name, password = user
    command = " ".join(args)
    binary = f"{server_of(host)}-cli"
    result = host.run(
        f"REDISCLI_AUTH={password} {binary} --no-auth-warning {TLS}"
        f" --user {name} -p {port} {command}"
    )
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def info(host, port: int, field: str) -> str:
    for line in cli(host, port, "INFO", "all", user=ADMIN).splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"INFO has no {field}")


@pytest.mark.parametrize("port", [SESSIONS, CACHE, QUEUES])
def test_each_instance_runs_from_its_own_unit_and_answers(host, server: str, port: int) -> None:
    name = NAMES[port]
    assert host.service(f"{server}-server@{name}").is_running
    assert host.service(f"{server}-server@{name}").is_enabled
    assert cli(host, port, "PING") == "PONG"
    assert cli(host, port, "CONFIG", "GET", "dir", user=ADMIN).endswith(f"/var/lib/{server}/{name}")
    assert f"{server}_version:" in cli(host, port, "INFO", "server", user=ADMIN)


def test_the_package_default_instance_is_off(host, server: str) -> None:
    assert not host.service(f"{server}-server").is_running
    assert not host.service(f"{server}-server").is_enabled


def test_policies_differ_between_sessions_cache_and_queues(host) -> None:
    def config(port: int, key: str) -> str:
        """The value CONFIG GET returns (its second line, absent when empty)."""
        return [*cli(host, port, "CONFIG", "GET", key, user=ADMIN).splitlines(), ""][1]

    # Sessions are never evicted for the cache's sake: they have an instance of their own.
    assert config(SESSIONS, "maxmemory-policy") == "volatile-ttl"
    assert config(SESSIONS, "appendonly") == "no"
    assert config(SESSIONS, "save") != ""
    assert config(CACHE, "maxmemory-policy") == "allkeys-lru"
    assert config(CACHE, "save") == ""
    assert config(QUEUES, "maxmemory-policy") == "noeviction"
    assert config(QUEUES, "appendonly") == "yes"
    assert config(QUEUES, "appendfsync") == "everysec"


def test_a_client_without_credentials_is_refused(host, server: str) -> None:
    out = host.run(f"{server}-cli {TLS} -p {SESSIONS} SET k v").stdout
    assert "NOAUTH" in out or "NOPERM" in out


def test_the_app_user_cannot_run_dangerous_commands(host) -> None:
    assert cli(host, SESSIONS, "SET", "kit:probe", "1") == "OK"
    for command in ("FLUSHALL", "CONFIG GET maxmemory", "KEYS '*'", "SHUTDOWN"):
        assert "NOPERM" in cli(host, SESSIONS, command), command
    assert cli(host, SESSIONS, "GET", "kit:probe") == "1"


def test_the_web_and_worker_users_each_reach_only_what_they_use(host) -> None:
    # The worker user does not exist on sessions or the cache.
    for port in (SESSIONS, CACHE):
        refused = host.run(
            f"REDISCLI_AUTH={WORKER[1]} {server_of(host)}-cli --no-auth-warning {TLS}"
            f" --user {WORKER[0]} -p {port} SET k v"
        )
        assert "WRONGPASS" in refused.stdout + refused.stderr, refused
        assert "NOAUTH" in refused.stdout, refused
    # On the queues, both reach RQ's keys; only the worker block-waits for a job.
    assert cli(host, QUEUES, "RPUSH", "rq:queue:probe", "job-1") == "1"
    assert "NOPERM" in cli(host, QUEUES, "BLPOP", "rq:queue:probe", "1")
    assert cli(host, QUEUES, "BLPOP", "rq:queue:probe", "1", user=WORKER).split() == [
        "rq:queue:probe", "job-1"
    ]  # fmt: skip
    # Nothing outside RQ's keys, nothing dangerous, for either.
    for user in (APP, WORKER):
        assert "NOPERM" in cli(host, QUEUES, "SET", "kit:other", "1", user=user)
        assert "NOPERM" in cli(host, QUEUES, "KEYS", "'rq:*'", user=user)
        assert "NOPERM" in cli(host, QUEUES, "CONFIG", "GET", "maxmemory", user=user)
    # The web tier keeps any key on the cache.
    assert cli(host, CACHE, "SET", "anything:at:all", "1") == "OK"


def test_queued_entries_survive_a_restart_of_the_queues_instance(host, server: str) -> None:
    cli(host, QUEUES, "DEL", "rq:restart-probe", "rq:restart-tx")
    for n in range(200):
        cli(host, QUEUES, "RPUSH", "rq:restart-probe", str(n))
    # Written in transactions, as RQ enqueues: replayed from the append-only file too.
    host.check_output(
        "printf 'MULTI\\nRPUSH rq:restart-tx a\\nRPUSH rq:restart-tx b\\nEXEC\\n' "
        f"| REDISCLI_AUTH={APP[1]} {server}-cli --no-auth-warning {TLS} --user {APP[0]} -p {QUEUES}"
    )
    host.check_output(f"systemctl restart {server}-server@queues.service")
    for _ in range(30):
        if cli(host, QUEUES, "PING") == "PONG":
            break
        time.sleep(0.5)
    assert cli(host, QUEUES, "LLEN", "rq:restart-probe") == "200"
    assert cli(host, QUEUES, "LINDEX", "rq:restart-probe", "199") == "199"
    assert cli(host, QUEUES, "LRANGE", "rq:restart-tx", "0", "-1").split() == ["a", "b"]


def test_the_instances_serve_tls_only(host, server: str) -> None:
    """No plain-text port answers; each instance's certificate is the host's, from the
    kit's CA, for the address clients use."""
    for port in (SESSIONS, CACHE, QUEUES):
        plain = host.run(
            f"REDISCLI_AUTH={APP[1]} {server}-cli --no-auth-warning --user app -p {port} PING"
        )
        assert "PONG" not in plain.stdout
        handshake = host.run(
            f"openssl s_client -connect 127.0.0.1:{port} -CAfile /etc/ssl/kit/ca.crt"
            " -verify_ip 127.0.0.1 -verify_return_error -brief </dev/null"
        )
        assert handshake.rc == 0, handshake.stderr
        assert "Verification: OK" in handshake.stderr
    assert cli(host, SESSIONS, "CONFIG", "GET", "port", user=ADMIN).split() == ["port", "0"]
