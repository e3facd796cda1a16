"""The etcd role alone: a one-member cluster that serves clients over TLS only, to clients
with a certificate from the kit's CA."""

from __future__ import annotations

import json
import shlex

from testinfra.backend.base import CommandResult

TLS = (
    "--cacert /etc/ssl/kit/ca.crt --cert /etc/ssl/kit/host.crt --key /etc/ssl/private/kit-host.key"
)
ENDPOINT = "--endpoints https://127.0.0.1:2379"


def etcdctl(host, *args: str, tls: str = TLS) -> CommandResult:
    return host.run(f"etcdctl {tls} {ENDPOINT} {' '.join(args)}")


def fetch(host, url: str) -> str:
    """What the host's Python reads at `url` (the base image has no curl), or the error."""
    script = (
        "import sys, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
        "except Exception as error:\n"
        "    print(f'{type(error).__name__}: {error}')\n"
    )
    return host.check_output(f"python3 -c {shlex.quote(script)} {url}")


def test_the_member_is_healthy_and_keeps_what_is_written(host) -> None:
    assert host.service("etcd").is_enabled
    assert etcdctl(host, "endpoint health").rc == 0
    assert etcdctl(host, "put", "/kit/molecule", "written").rc == 0
    got = etcdctl(host, "get", "--print-value-only", "/kit/molecule")
    assert got.stdout.strip() == "written", got.stderr


def test_the_member_is_named_after_its_host_with_the_data_in_the_kits_directory(host) -> None:
    members = json.loads(etcdctl(host, "member list -w json").stdout)["members"]
    assert [m["name"] for m in members] == ["kit-molecule-etcd"]
    assert members[0]["clientURLs"] == ["https://127.0.0.1:2379"]
    assert host.file("/var/lib/etcd/kit/member").is_directory


def test_a_client_without_a_certificate_from_the_kit_ca_is_refused(host) -> None:
    """Without a client certificate, and with a certificate the kit's CA did not sign."""
    no_cert = etcdctl(host, "get /kit/molecule", tls="--cacert /etc/ssl/kit/ca.crt")
    assert no_cert.rc != 0
    host.run_test(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
        " -subj /CN=foreign -addext subjectAltName=IP:127.0.0.1"
        " -keyout /tmp/foreign.key -out /tmp/foreign.crt"
    )
    foreign = etcdctl(
        host, "get /kit/molecule",
        tls="--cacert /etc/ssl/kit/ca.crt --cert /tmp/foreign.crt --key /tmp/foreign.key",
    )  # fmt: skip
    assert foreign.rc != 0
    plain = fetch(host, "http://127.0.0.1:2379/version")
    assert "etcdserver" not in plain
    assert "HTTP Error 400" in plain or "Connection reset" in plain or "Disconnected" in plain


def test_metrics_answer_in_plain_http_on_their_own_port(host) -> None:
    assert "etcd_server_has_leader 1" in fetch(host, "http://127.0.0.1:2381/metrics")
