"""A local stand-in for the Linode API v4 endpoints the kit uses, for tests without the cloud.

The kit's provisioning (community.general.linode_v4) and its production inventory (the
community.general.linode plugin) build their client with the real address,
https://api.linode.com/v4, and nothing in the kit changes for a test. The stand-in is an
HTTPS proxy instead: a client run with HTTPS_PROXY pointing at it and REQUESTS_CA_BUNDLE at
its certificate authority opens its tunnel to api.linode.com here, and the stand-in answers
as the API does, in the documented JSON shapes:

- GET    /v4/linode/instances         paginated list (page, pages, results, data),
                                      filtered by the X-Filter header
- POST   /v4/linode/instances         create (201 with the instance)
- GET    /v4/linode/instances/{id}    one instance
- DELETE /v4/linode/instances/{id}    delete

Every request must carry the configured bearer token (401 otherwise, as the API answers).
Each request is recorded, so tests can count what the kit asked for.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

API_HOST = "api.linode.com"
PLANS = {
    "g6-nanode-1": {"disk": 25600, "memory": 1024, "vcpus": 1, "transfer": 1000},
    "g6-standard-1": {"disk": 51200, "memory": 2048, "vcpus": 1, "transfer": 2000},
    "g6-standard-2": {"disk": 81920, "memory": 4096, "vcpus": 2, "transfer": 4000},
    "g6-standard-4": {"disk": 163840, "memory": 8192, "vcpus": 4, "transfer": 5000},
}


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for api.linode.com signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kit test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, API_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(API_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "api.pem",
        directory / "api.key",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@dataclass
class Account:
    """The stand-in's state: one Linode account."""

    token: str
    instances: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    next_id: int = 40000001
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for required in ("type", "region"):
            if not body.get(required):
                return 400, {"errors": [{"field": required, "reason": f"{required} is required"}]}
        if body["type"] not in PLANS:
            return 400, {"errors": [{"field": "type", "reason": "A valid plan type is required"}]}
        label = body.get("label") or f"linode{self.next_id}"
        if any(instance["label"] == label for instance in self.instances.values()):
            return 400, {"errors": [{"field": "label", "reason": "Label must be unique"}]}
        if body.get("image") and not (body.get("root_pass") or body.get("authorized_keys")):
            return 400, {"errors": [{"field": "root_pass", "reason": "root_pass is required"}]}
        number = self.next_id
        self.next_id += 1
        n = number - 40000000
        public = str(ipaddress.ip_address("203.0.113.0") + n)
        ipv4 = [public]
        if body.get("private_ip"):
            ipv4.append(str(ipaddress.ip_address("192.168.128.0") + n))
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        instance = {
            "id": number,
            "label": label,
            "group": body.get("group") or "",
            "status": "running",
            "created": stamp,
            "updated": stamp,
            "type": body["type"],
            "region": body["region"],
            "image": body.get("image"),
            "ipv4": ipv4,
            "ipv6": f"2600:3c00::f03c:{n:x}:0:1/128",
            "hypervisor": "kvm",
            "specs": PLANS[body["type"]],
            "tags": sorted(body.get("tags") or []),
            "watchdog_enabled": True,
            "alerts": {"cpu": 180, "io": 10000, "network_in": 10, "network_out": 10},
            "backups": {"enabled": False, "available": False, "schedule": {}},
            "host_uuid": f"00000000-0000-4000-8000-{number:012d}",
            "has_user_data": False,
            "lke_cluster_id": None,
            "disk_encryption": "disabled",
        }
        self.instances[number] = instance
        return 200, instance


class _ApiHandler(BaseHTTPRequestHandler):
    """The API itself, spoken inside the TLS tunnel."""

    protocol_version = "HTTP/1.1"
    account: Account

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read Account.requests instead."""

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.account.token}":
            return True
        self._send(401, {"errors": [{"reason": "Invalid Token"}]})
        return False

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        body = self._body()
        with self.account.lock:
            self.account.requests.append((method, url.path, body))
        if not self._authorized():
            return
        parts = url.path.strip("/").split("/")
        if parts[:3] != ["v4", "linode", "instances"]:
            self._send(404, {"errors": [{"reason": "Not found"}]})
            return
        with self.account.lock:
            if len(parts) == 3 and method == "GET":
                self._list(url.query)
            elif len(parts) == 3 and method == "POST":
                self._send(*self.account.create(body or {}))
            elif len(parts) == 4 and parts[3].isdigit() and int(parts[3]) in self.account.instances:
                number = int(parts[3])
                if method == "GET":
                    self._send(200, self.account.instances[number])
                elif method == "DELETE":
                    del self.account.instances[number]
                    self._send(200, {})
                else:
                    self._send(405, {"errors": [{"reason": "Method not allowed"}]})
            else:
                self._send(404, {"errors": [{"reason": "Not found"}]})

    def _list(self, query: str) -> None:
        wanted = json.loads(self.headers.get("X-Filter") or "{}")
        rows = [
            instance
            for instance in self.account.instances.values()
            if all(instance.get(key) == value for key, value in wanted.items())
        ]
        params = parse_qs(query)
        size = int(params.get("page_size", ["100"])[0])
        page = int(params.get("page", ["1"])[0])
        pages = max(1, -(-len(rows) // size))
        data = rows[(page - 1) * size : page * size]
        self._send(200, {"data": data, "page": page, "pages": pages, "results": len(rows)})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PUT(self) -> None:
        self._route("PUT")


class _ProxyHandler(BaseHTTPRequestHandler):
    """The proxy's side: CONNECT api.linode.com:443 only, then TLS and the API."""

    protocol_version = "HTTP/1.1"
    tls: ssl.SSLContext
    account: Account

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_CONNECT(self) -> None:
        if self.path != f"{API_HOST}:443":
            self.send_error(403, "the stand-in only tunnels to api.linode.com:443")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        tunnel = self.tls.wrap_socket(self.connection, server_side=True)
        handler = type("Api", (_ApiHandler,), {"account": self.account})
        handler(tunnel, self.client_address, self.server)
        self.close_connection = True


class LinodeStandIn:
    """Run the stand-in in a thread: `with LinodeStandIn(tmp, token) as api: api.env`."""

    def __init__(self, directory: Path, token: str) -> None:
        self.account = Account(token=token)
        self.ca, cert, key = _certificates(directory)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        handler = type("Proxy", (_ProxyHandler,), {"tls": tls, "account": self.account})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def env(self) -> dict[str, str]:
        """The environment that sends a Linode client here instead of the cloud."""
        host, port = self.server.server_address[:2]
        return {
            "HTTPS_PROXY": f"http://{host}:{port}",
            "https_proxy": f"http://{host}:{port}",
            "REQUESTS_CA_BUNDLE": str(self.ca),
            "NO_PROXY": "",
            "no_proxy": "",
            "LINODE_ACCESS_TOKEN": self.account.token,
        }

    def count(self, method: str, path: str = "/v4/linode/instances") -> int:
        with self.account.lock:
            return sum(1 for m, p, _ in self.account.requests if m == method and p == path)

    def __enter__(self) -> LinodeStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
