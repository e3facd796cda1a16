"""The kit's CA on the controller and one host's certificate, key and renewal."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

testinfra_hosts = ["kit-molecule-pki"]

SCENARIO = Path(__file__).resolve().parents[1]
CA = "/etc/ssl/kit/ca.crt"
CERT = "/etc/ssl/kit/host.crt"
KEY = "/etc/ssl/private/kit-host.key"


def ca_dir() -> Path:
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".secrets" / "pki"


def converge(*extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["ANSIBLE_ROLES_PATH"] = str(SCENARIO.parents[2])
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if ephemeral and Path(ephemeral, "ansible.cfg").exists():
        env["ANSIBLE_CONFIG"] = str(Path(ephemeral, "ansible.cfg"))
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         str(SCENARIO / "converge.yml"), *extra],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def serial(host: Any) -> str:
    return host.check_output(f"openssl x509 -in {CERT} -noout -serial")


def test_the_certificate_is_signed_by_the_kit_ca_for_the_host_names(host: Any) -> None:
    verify = host.run(f"openssl verify -CAfile {CA} -purpose sslserver {CERT}")
    assert verify.rc == 0, verify.stdout + verify.stderr
    assert host.run(f"openssl verify -CAfile {CA} -purpose sslclient {CERT}").rc == 0
    text = host.check_output(f"openssl x509 -in {CERT} -noout -text")
    assert "Subject: CN=kit-molecule-pki" in text
    assert "IP Address:127.0.0.1" in text
    assert "DNS:kit-molecule-pki" in text
    assert "DNS:db.example.internal" in text
    assert "CA:FALSE" in text


def test_the_key_is_the_hosts_own_and_readable_by_ssl_cert_only(host: Any) -> None:
    key = host.file(KEY)
    assert (key.user, key.group, key.mode) == ("root", "ssl-cert", 0o640)
    cert_key = host.check_output(f"openssl x509 -in {CERT} -noout -pubkey")
    own_key = host.check_output(f"openssl pkey -in {KEY} -pubout")
    assert cert_key == own_key


def test_the_ca_key_stays_on_the_controller_encrypted(host: Any) -> None:
    assert (ca_dir() / "ca.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (ca_dir() / "ca.crt").read_text() == host.file(CA).content_string
    # On the host: its own key (and Debian's snakeoil one), never the CA's.
    keys = host.run("grep -rl 'PRIVATE KEY' /etc/ssl").stdout.split()
    assert KEY in keys
    assert not [path for path in keys if path.startswith("/etc/ssl/kit/")]
    assert host.run("grep -rl 'ENCRYPTED PRIVATE KEY' /etc/ssl").stdout == ""


def test_tls_clients_verify_the_host_by_its_address(host: Any) -> None:
    """A client checking the name (verify-full) accepts the address it was issued for only."""
    server = host.run(
        f"systemd-run --unit=kit-pki-test openssl s_server -accept 127.0.0.1:9443 -www"
        f" -cert {CERT} -key {KEY}"
    )
    assert server.rc == 0, server.stderr
    try:
        host.run("sleep 1")
        good = host.run(
            f"echo | openssl s_client -connect 127.0.0.1:9443 -CAfile {CA} -verify_ip 127.0.0.1"
            " -verify_return_error"
        )
        assert good.rc == 0, good.stdout[-2000:] + good.stderr[-2000:]
        wrong = host.run(
            f"echo | openssl s_client -connect 127.0.0.1:9443 -CAfile {CA} -verify_ip 10.9.9.9"
            " -verify_return_error"
        )
        assert wrong.rc != 0
    finally:
        host.run("systemctl stop kit-pki-test")


def test_a_certificate_near_its_end_is_issued_again(host: Any) -> None:
    before = serial(host)
    # A certificate valid 825 days ends within 826: issued again, for 900 days, same key.
    run = converge("-e", "pki_certificate_days=900", "-e", "pki_certificate_renew_days=826")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert serial(host) != before
    assert host.run(f"openssl verify -CAfile {CA} {CERT}").rc == 0
    again = converge("-e", "pki_certificate_days=900", "-e", "pki_certificate_renew_days=826")
    assert again.returncode == 0
    assert "changed=0" in again.stdout, again.stdout[-3000:]


def test_a_renewal_window_as_long_as_the_life_is_refused(host: Any) -> None:
    before = serial(host)
    run = converge("-e", "pki_certificate_days=30", "-e", "pki_certificate_renew_days=30")
    assert run.returncode != 0
    said = " ".join((run.stdout + run.stderr).split())
    assert "pki_certificate_renew_days (30) must be less than pki_certificate_days (30)" in said
    assert serial(host) == before
