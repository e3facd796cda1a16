"""HAProxy in front of three test backends, checked through its own ports and runtime API."""

from __future__ import annotations

import csv
import io
import time

BACKENDS = (9001, 9002, 9003)
SERVER = "kit-molecule-haproxy-{}"
SOCKET = "/run/haproxy/admin.sock"
STATS_AUTH = "stats:molecule-stats"


def get(host, url: str, *options: str) -> tuple[int, str]:
    """GET a URL from inside the container: (status, body)."""
    result = host.run(f"curl -s -w '\\n%{{http_code}}' {' '.join(options)} '{url}'")
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), body


def runtime_api(host, command: str) -> str:
    return host.check_output(f"echo '{command}' | socat stdio {SOCKET}")


def server_states(host) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(runtime_api(host, "show stat").lstrip("# ")))
    return {
        r["svname"]: r["status"] for r in rows if r["pxname"] == "app" and r["svname"] != "BACKEND"
    }


def wait_for_states(host, wanted: str, timeout: float = 15.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = server_states(host)
        if all(s.startswith(wanted) for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def test_rendered_configuration_is_valid_without_a_warning(host) -> None:
    """Valid, and nothing deprecated or ignored on this release's HAProxy (2.6 on Debian 12,
    3.0 on Debian 13): a warning today is an error in a later release."""
    result = host.run("haproxy -c -f /etc/haproxy/haproxy.cfg")
    assert result.rc == 0, result.stderr
    output = result.stdout + result.stderr
    assert "[WARNING]" not in output, output
    assert "deprecated" not in output.lower(), output


def test_requests_reach_every_backend_in_turn(host) -> None:
    assert set(wait_for_states(host, "UP").values()) == {"UP"}
    seen = [get(host, "http://127.0.0.1/whoami")[1].strip() for _ in range(6)]
    for start in range(4):
        assert len(set(seen[start : start + 3])) == 3, seen
    assert sorted(set(seen)) == [f"backend {port}" for port in BACKENDS]


def test_request_id_is_kept_or_generated_and_logged(host) -> None:
    get(host, "http://127.0.0.1/whoami?given", "-H 'X-Request-ID: molecule-rid-42'")
    get(host, "http://127.0.0.1/whoami?generated")
    time.sleep(1)
    log = host.run("journalctl -u haproxy --no-pager -n 50").stdout
    assert any("rid=molecule-rid-42" in line and "?given" in line for line in log.splitlines())
    generated = [line for line in log.splitlines() if "?generated" in line]
    assert generated
    assert "rid=-" not in generated[-1]
    assert len(generated[-1].split("rid=")[1].split()[0]) == 36  # a UUID


def test_stats_and_metrics_are_private_and_guarded(host) -> None:
    assert get(host, "http://127.0.0.1:8404/stats")[0] == 401
    status, body = get(host, "http://127.0.0.1:8404/stats", f"-u {STATS_AUTH}")
    assert status == 200
    assert "Statistics Report" in body
    status, body = get(host, "http://127.0.0.1:8404/metrics", f"-u {STATS_AUTH}")
    assert status == 200
    assert 'haproxy_server_status{proxy="app",server="kit-molecule-haproxy-9001"' in body
    # The public frontend passes /stats to the app like any path.
    assert "Statistics Report" not in get(host, "http://127.0.0.1/stats")[1]


def test_drained_server_gets_no_new_request(host) -> None:
    drained = SERVER.format(BACKENDS[0])
    runtime_api(host, f"set server app/{drained} state drain")
    try:
        seen = {get(host, "http://127.0.0.1/whoami")[1].strip() for _ in range(6)}
        assert seen == {f"backend {p}" for p in BACKENDS[1:]}
    finally:
        runtime_api(host, f"set server app/{drained} state ready")


def test_friendly_503_when_every_backend_is_down(host) -> None:
    for port in BACKENDS:
        host.run(f"systemctl stop kit-test-backend@{port}")
    try:
        assert set(wait_for_states(host, "DOWN").values()) == {"DOWN"}
        status, body = get(host, "http://127.0.0.1/whoami")
        assert status == 503
        assert "Back in a moment" in body
    finally:
        for port in BACKENDS:
            host.run(f"systemctl start kit-test-backend@{port}")
    assert set(wait_for_states(host, "UP").values()) == {"UP"}


def test_https_serves_with_the_configured_certificate(host) -> None:
    status, body = get(host, "https://127.0.0.1/whoami", "-k")
    assert status == 200
    assert body.startswith("backend ")


def test_https_answers_carry_hsts_and_security_headers_and_no_banner(host) -> None:
    headers = host.check_output("curl -sk -D - -o /dev/null https://127.0.0.1/whoami").lower()
    assert "strict-transport-security: max-age=63072000\r\n" in headers
    assert "x-content-type-options: nosniff" in headers
    assert "x-frame-options: sameorigin" in headers
    # python's http.server names itself, as gunicorn does: the lb removes it.
    assert "\nserver:" not in headers
    plain = host.check_output("curl -s -D - -o /dev/null http://127.0.0.1/whoami").lower()
    assert "strict-transport-security" not in plain


def test_acme_challenges_over_http_reach_certbot_only(host) -> None:
    path = "/.well-known/acme-challenge/molecule-token"
    assert get(host, f"http://127.0.0.1{path}") == (200, "molecule-token.key-authorization\n")
    # Over HTTPS, and for any other path, the application answers, never certbot.
    assert get(host, f"https://127.0.0.1{path}", "-k")[0] == 404
    assert get(host, "http://127.0.0.1/.well-known/other")[0] == 404


def test_open_file_limit_follows_maxconn(host) -> None:
    ceiling = int(host.check_output("awk '/^Max open files/ {print $5}' /proc/1/limits"))
    limit = int(host.check_output("systemctl show --value -p LimitNOFILE haproxy"))
    assert limit == min(4000 * 2 + 1000, ceiling)
    master = host.check_output("systemctl show --value -p MainPID haproxy")
    assert f"{limit}" in host.check_output(f"grep 'Max open files' /proc/{master}/limits")


def outside_address(host) -> str:
    """The container's own address: a source outside haproxy_private_networks here."""
    return host.check_output("hostname -I").split()[0]


def test_private_paths_answer_the_operators_networks_only(host) -> None:
    outside = outside_address(host)
    assert get(host, "http://127.0.0.1/whoami")[0] == 200
    status, body = get(host, f"http://{outside}/whoami")
    assert status == 404
    assert "backend" not in body
    assert get(host, f"http://{outside}/healthz")[0] == 200


def test_a_source_past_its_limits_is_answered_429_and_the_operators_never(host) -> None:
    outside = outside_address(host)
    # Five idle connections held open from the outside address (the limit): the sixth
    # connection's request is refused while they stay open.
    holder = host.run(
        f"python3 -c \"import socket, time; s = [socket.create_connection(('{outside}', 80))"
        ' for _ in range(5)]; time.sleep(4)" >/dev/null 2>&1 & sleep 1;'
        f" curl -s -D - -o /dev/null http://{outside}/healthz"
    )
    assert " 429 " in holder.stdout.splitlines()[0], holder.stdout
    assert "retry-after: 10" in holder.stdout.lower()
    time.sleep(4)
    assert get(host, f"http://{outside}/healthz")[0] == 200
    # Past 20 requests in 10 s from the outside address: 429; the loopback is never counted.
    statuses = [get(host, f"http://{outside}/healthz")[0] for _ in range(25)]
    assert 429 in statuses, statuses
    # HAProxy's rates weigh in the previous period too: the limit is reached near 20.
    assert statuses[:8] == [200] * 8, statuses
    assert [get(host, "http://127.0.0.1/healthz")[0] for _ in range(25)] == [200] * 25
    log = host.check_output("journalctl -u haproxy --no-pager -n 50")
    assert " 429 " in log
