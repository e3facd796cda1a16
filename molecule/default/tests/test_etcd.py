"""The etcd cluster (the etcd role on the etcd group): one cluster of every member, writes
that reach every member and outlive the loss of one, and clients with a certificate from the
kit's CA only."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import INVENTORY, get_host, host_vars
from testinfra.backend.base import CommandResult

MEMBERS = sorted(INVENTORY.get_hosts("etcd"))
TLS = (
    "--cacert /etc/ssl/kit/ca.crt --cert /etc/ssl/kit/host.crt --key /etc/ssl/private/kit-host.key"
)


def address(member: str) -> str:
    return str(host_vars(member)["private_ip"])


def etcdctl(member: str, *args: str) -> CommandResult:
    """etcdctl on a member, as that member's client."""
    endpoint = f"https://{address(member)}:2379"
    return get_host(member).run(f"etcdctl {TLS} --endpoints {endpoint} {' '.join(args)}")


def wait_healthy(member: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while etcdctl(member, "endpoint health").rc != 0:
        assert time.monotonic() < deadline, f"etcd on {member} is not healthy after {timeout} s"
        time.sleep(1)


def test_the_inventory_gives_an_odd_number_of_members() -> None:
    assert len(MEMBERS) == 3


@pytest.mark.parametrize("member", MEMBERS)
def test_every_member_sees_the_same_cluster_and_leader(member: str) -> None:
    result = etcdctl(member, "endpoint status --cluster -w json")
    assert result.rc == 0, result.stderr
    statuses = json.loads(result.stdout)
    assert sorted(s["Endpoint"] for s in statuses) == sorted(
        f"https://{address(m)}:2379" for m in MEMBERS
    )
    assert len({s["Status"]["header"]["cluster_id"] for s in statuses}) == 1
    leaders = {s["Status"]["leader"] for s in statuses}
    assert len(leaders) == 1
    assert leaders != {0}


def test_a_write_on_one_member_is_read_on_every_other() -> None:
    key, value = f"/kit-test/{uuid.uuid4().hex}", uuid.uuid4().hex
    assert etcdctl(MEMBERS[0], "put", key, value).rc == 0
    for member in MEMBERS[1:]:
        got = etcdctl(member, "get --print-value-only", key)
        assert got.stdout.strip() == value, f"{member}: {got.stderr}"
    etcdctl(MEMBERS[0], "del", key)


def test_writes_go_on_with_one_member_stopped_and_it_catches_up() -> None:
    stopped, writer, reader = MEMBERS[-1], MEMBERS[0], MEMBERS[1]
    key, value = f"/kit-test/{uuid.uuid4().hex}", uuid.uuid4().hex
    get_host(stopped).run_test("systemctl stop etcd.service")
    try:
        written = etcdctl(writer, "--command-timeout 10s put", key, value)
        assert written.rc == 0, written.stderr
        assert etcdctl(reader, "get --print-value-only", key).stdout.strip() == value
    finally:
        get_host(stopped).run_test("systemctl start etcd.service")
    wait_healthy(stopped)
    # A linearizable read on the member that was down: it has caught up.
    assert etcdctl(stopped, "get --print-value-only", key).stdout.strip() == value
    etcdctl(writer, "del", key)


def test_a_client_without_a_certificate_from_the_kit_ca_is_refused() -> None:
    member = MEMBERS[0]
    host = get_host(member)
    url = f"https://{address(member)}:2379"
    no_cert = host.run(f"etcdctl --cacert /etc/ssl/kit/ca.crt --endpoints {url} get /kit")
    assert no_cert.rc != 0
    # The JSON gateway Patroni speaks to, with curl: refused without a client certificate,
    # answered with the host's.
    gateway = (
        f"curl -sS --max-time 5 --cacert /etc/ssl/kit/ca.crt -X POST -d '{{}}'"
        f" {url}/v3/maintenance/status"
    )
    assert host.run(gateway).rc != 0
    with_cert = host.run(
        f"{gateway} --cert /etc/ssl/kit/host.crt --key /etc/ssl/private/kit-host.key"
    )
    assert with_cert.rc == 0, with_cert.stderr
    assert '"leader"' in with_cert.stdout


def test_hosts_outside_the_clients_cannot_reach_the_members() -> None:
    outsider = sorted(INVENTORY.get_hosts("app"))[0]
    probe = get_host(outsider).run(f"timeout 3 bash -c '</dev/tcp/{address(MEMBERS[0])}/2379'")
    assert probe.rc != 0
