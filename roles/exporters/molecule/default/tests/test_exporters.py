"""The exporters role on a Redis host: node_exporter and one exporter per Redis instance, each
on the host's private address only, each reading its own instance as the monitoring user."""

from __future__ import annotations

import re

import pytest

# A GET from inside the container (the base image has Python, not curl).
FETCH = (
    "python3 -c 'import sys, urllib.request;"
    " print(urllib.request.urlopen(sys.argv[1]).read().decode())'"
)
# The redis role's default instances: exporter port, name, maxmemory.
INSTANCES = [(9121, "sessions", 256 << 20), (9122, "cache", 256 << 20), (9123, "queues", 512 << 20)]


def address(host) -> str:
    return str(host.interface("eth0").addresses[0])


def metrics(host, port: int) -> str:
    return str(host.check_output(f"{FETCH} http://%s:%s/metrics", address(host), str(port)))


def value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match.group(1))


def test_every_exporter_listens_on_the_private_address_only(host) -> None:
    listening = host.check_output("ss -Hltn")
    for port in [9100] + [p for p, _, _ in INSTANCES]:
        sockets = re.findall(rf"\s(\S+):{port}\s", listening)
        assert sockets == [address(host)], f"port {port}: {sockets}"
    # Debian's own single exporter is masked: it would listen on every address.
    enabled = host.run("systemctl is-enabled prometheus-redis-exporter.service").stdout.strip()
    assert enabled == "masked"


def test_node_exporter_reports_the_host(host) -> None:
    text = metrics(host, 9100)
    assert value(text, "node_memory_MemTotal_bytes") > 0
    assert "node_filesystem_avail_bytes" in text


@pytest.mark.parametrize(("port", "name", "maxmemory"), INSTANCES, ids=[n for _, n, _ in INSTANCES])
def test_each_redis_exporter_reads_its_own_instance(
    host, port: int, name: str, maxmemory: int
) -> None:
    text = metrics(host, port)
    assert value(text, "redis_up") == 1
    assert value(text, "redis_memory_max_bytes") == maxmemory, name


def redis_cli(host) -> str:
    """The server's CLI, over TLS to the host's private address (which its certificate
    names), checked against the kit's CA."""
    binary = "valkey-cli" if host.system_info.release.split(".")[0] == "13" else "redis-cli"
    address = host.check_output("hostname -I").split()[0]
    return f"{binary} --tls --cacert /etc/ssl/kit/ca.crt -h {address}"


def test_the_monitoring_user_reads_the_state_and_no_key(host) -> None:
    cli = redis_cli(host)
    auth = f"REDISCLI_AUTH=molecule-monitor {cli} --no-auth-warning --user monitor -p 6379"
    assert "used_memory" in host.check_output(f"{auth} INFO memory")
    assert "NOPERM" in host.run(f"{auth} GET some-session").stdout
    assert "NOPERM" in host.run(f"{auth} SET some-session x").stdout
    # The password is in the unit's environment file, never on a command line.
    assert "molecule-monitor" not in host.check_output("ps -eo args")


def test_the_queues_exporter_reports_each_queue_depth_and_registry(host) -> None:
    cli = redis_cli(host)
    admin = f"REDISCLI_AUTH=molecule-admin {cli} --no-auth-warning --user admin -p 6380"
    host.check_output(f"{admin} DEL rq:queue:default rq:failed:low")
    host.check_output(f"{admin} RPUSH rq:queue:default job-1 job-2 job-3")
    host.check_output(f"{admin} ZADD rq:failed:low 1 job-4")
    try:
        text = metrics(host, 9123)
        assert value(text, 'redis_key_size{db="db0",key="rq:queue:default"}') == 3
        assert value(text, 'redis_key_size{db="db0",key="rq:failed:low"}') == 1
    finally:
        host.check_output(f"{admin} DEL rq:queue:default rq:failed:low")
    # Reading sizes is all the exporter did: the server refused it nothing.
    assert host.check_output(f"{admin} ACL LOG") == ""


def script_values(text: str) -> dict[str, float]:
    """redis_script_values by key (the script's file may be a label too, by version)."""
    pattern = r'^redis_script_values\{[^}]*key="([^"]+)"[^}]*\} (\S+)$'
    found = re.findall(pattern, text, re.MULTILINE)
    return {key: float(number) for key, number in found}


def test_the_queues_exporter_sums_the_rq_workers_and_reads_no_job(host) -> None:
    cli = redis_cli(host)
    admin = f"REDISCLI_AUTH=molecule-admin {cli} --no-auth-warning --user admin -p 6380"
    monitor = f"REDISCLI_AUTH=molecule-monitor {cli} --no-auth-warning --user monitor -p 6380"
    keys = "rq:workers rq:worker:a rq:worker:b rq:job:j1"
    host.check_output(f"{admin} DEL {keys}")
    host.check_output(f"{admin} SADD rq:workers rq:worker:a rq:worker:b")
    host.check_output(
        f"{admin} HSET rq:worker:a state busy successful_job_count 3 failed_job_count 1"
        " total_working_time 1.5"
    )
    host.check_output(f"{admin} HSET rq:worker:b state idle successful_job_count 2")
    host.check_output(f"{admin} HSET rq:job:j1 data secret")
    try:
        found = script_values(metrics(host, 9123))
        assert found == {
            "rq_workers_busy": 1,
            "rq_workers_idle": 1,
            "rq_jobs_succeeded": 5,
            "rq_jobs_failed": 1,
            "rq_working_seconds": 1.5,
        }
        assert host.check_output(f"{admin} ACL LOG") == ""
        # The workers' hashes, through the script, and nothing else: no job's data.
        assert "NOPERM" in host.run(f"{monitor} HMGET rq:job:j1 data").stdout
        assert "NOPERM" in host.run(f"{monitor} HGETALL rq:worker:a").stdout
    finally:
        host.check_output(f"{admin} DEL {keys}")
        host.check_output(f"{admin} ACL LOG RESET")
