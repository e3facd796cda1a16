"""The lb's HTTPS as a scanner sees it: Debian's testssl.sh against the full topology's lb.

testssl.sh (installed by `make molecule-stack`) connects from the controller to the lb's
HTTPS port, offers every protocol and cipher category it knows, and reads the headers of
one answer of the application's (`/session`, which sets the session cookie).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import INVENTORY, host_vars

LB = INVENTORY.get_hosts("lb")[0]
TARGET = f"https://{host_vars(LB)['private_ip']}:443/session"


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """testssl.sh's findings by id: protocols (-p), cipher categories (-s), headers (-h)."""
    testssl = shutil.which("testssl")
    assert testssl, "testssl (Debian's testssl.sh) is not installed: run `make molecule-stack`"
    report = tmp_path_factory.mktemp("testssl") / "findings.json"
    run = subprocess.run(
        [testssl, "--quiet", "--color", "0", "--warnings", "off", "--jsonfile", str(report),
         "-p", "-s", "-h", TARGET],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert report.exists(), run.stdout[-3000:] + run.stderr[-2000:]
    return {item["id"]: item for item in json.loads(report.read_text())}


def test_only_tls_1_2_and_1_3_are_offered(findings: dict[str, dict[str, str]]) -> None:
    for protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[protocol]["finding"] == "not offered", findings[protocol]
    assert findings["TLS1_2"]["finding"] == "offered"
    assert findings["TLS1_3"]["finding"].startswith("offered")


def test_no_obsolete_or_weak_cipher_is_offered(findings: dict[str, dict[str, str]]) -> None:
    """cipherlist_AVERAGE is testssl.sh 3.0's "Obsolete CBC ciphers (AES, ARIA etc.)"."""
    for category in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
        assert findings[f"cipherlist_{category}"]["finding"] == "not offered", category
    assert findings["cipherlist_STRONG"]["finding"] == "offered"


def test_https_answers_carry_hsts(findings: dict[str, dict[str, str]]) -> None:
    assert findings["HSTS_time"]["severity"] == "OK", findings["HSTS_time"]
    assert "63072000 seconds" in findings["HSTS_time"]["finding"]


def test_no_server_banner_and_the_security_headers(findings: dict[str, dict[str, str]]) -> None:
    assert findings["banner_server"]["finding"].startswith("No Server banner")
    assert findings["banner_application"]["finding"].startswith("No application banner")
    assert findings["X-Frame-Options"]["finding"] == "SAMEORIGIN"
    assert findings["X-Content-Type-Options"]["finding"] == "nosniff"
    assert findings["Referrer-Policy"]["finding"] == "strict-origin-when-cross-origin"


def test_the_session_cookie_is_secure(findings: dict[str, dict[str, str]]) -> None:
    assert findings["cookie_count"]["finding"].startswith("1 at"), findings["cookie_count"]
    assert findings["cookie_secure"]["finding"] == "All (1) at '/session' marked as secure"
