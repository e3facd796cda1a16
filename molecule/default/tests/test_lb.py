"""The load balancer in front of the real gunicorn instances of the full topology."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import testinfra
from conftest import INVENTORY, clients_running, get_host, host_vars, run_playbook

LB = INVENTORY.get_hosts("lb")[0]
APP_NODES = sorted(INVENTORY.get_hosts("app"))
LB_URL = str(host_vars(LB)["local_stack_lb_url"])
SOCKET = "/run/haproxy/admin.sock"
CONFIG = "/etc/haproxy/haproxy.cfg"


@pytest.fixture(scope="module")
def lb() -> testinfra.host.Host:
    return get_host(LB)


def fetch(path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(LB_URL + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def server_stats(lb) -> dict[str, dict[str, str]]:
    raw = lb.check_output(f"echo 'show stat' | socat stdio {SOCKET}").lstrip("# ")
    return {
        row["svname"]: row
        for row in csv.DictReader(io.StringIO(raw))
        if row["pxname"] == "app" and row["svname"] != "BACKEND"
    }


def dropped_logs(lb) -> int:
    """Log lines HAProxy could not hand to journald since it started."""
    info = lb.check_output(f"echo 'show info' | socat stdio {SOCKET}")
    return int(next(x for x in info.splitlines() if x.startswith("DroppedLogs:")).split()[1])


def backend_queue(lb) -> int:
    raw = lb.check_output(f"echo 'show stat' | socat stdio {SOCKET}").lstrip("# ")
    rows = csv.DictReader(io.StringIO(raw))
    return next(int(r["qcur"]) for r in rows if r["pxname"] == "app" and r["svname"] == "BACKEND")


def wait_for_status(lb, server: str, status: str, timeout: float = 20.0) -> float:
    """Seconds until HAProxy reports `server` with `status`; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server_stats(lb)[server]["status"].startswith(status):
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"{server} not {status} after {timeout}s: {server_stats(lb)[server]['status']}")


@contextmanager
def request_stream(path: str = "/whoami", limit: int = 5000) -> Iterator[Counter[str]]:
    """Send requests one after another (a new connection each) until the block ends;
    yields a Counter of outcomes: 'ok' or the failure seen."""
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set() and sum(outcomes.values()) < limit:
            try:
                status, _ = fetch(path)
                outcomes["ok" if status == 200 else f"status {status}"] += 1
            except OSError as error:
                outcomes[type(error).__name__] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        thread.join(timeout=30)


def test_configuration_of_the_full_topology_draws_no_warning(lb) -> None:
    """Every server line, check and timeout, as rendered for the whole fleet: nothing
    deprecated or ignored on this release's HAProxy."""
    result = lb.run(f"haproxy -c -f {CONFIG}")
    assert result.rc == 0, result.stderr
    output = result.stdout + result.stderr
    assert "[WARNING]" not in output, output
    assert "deprecated" not in output.lower(), output


def test_backend_lists_every_running_instance_of_every_app_node(lb) -> None:
    running = set()
    for node in APP_NODES:
        units = get_host(node).check_output(
            "systemctl list-units --state=running --plain --no-legend 'gunicorn@*.service'"
        )
        ports = [
            line.split()[0].split("@")[1].removesuffix(".service") for line in units.splitlines()
        ]
        running |= {f"{node}-{port}" for port in ports}
    assert len(running) == len(APP_NODES) * 2
    assert set(server_stats(lb)) == running


def test_requests_through_the_lb_reach_every_instance_in_turn(lb) -> None:
    before = {name: int(row["stot"]) for name, row in server_stats(lb).items()}
    rounds = 5
    seen = []
    for _ in range(rounds * len(before)):
        status, body = fetch("/whoami")
        assert status == 200
        answer = json.loads(body)
        seen.append(f"{answer['host']}-{answer['instance']}")
    after = {name: int(row["stot"]) for name, row in server_stats(lb).items()}
    # Every instance served exactly its share, and each window of N requests hit N instances.
    assert {name: after[name] - before[name] for name in after} == dict.fromkeys(after, rounds)
    for start in range(len(seen) - len(before) + 1):
        assert len(set(seen[start : start + len(before)])) == len(before), seen


def test_request_id_is_passed_to_the_app_or_generated(lb) -> None:
    given = f"test-{uuid.uuid4()}"
    assert json.loads(fetch("/whoami", {"X-Request-ID": given})[1])["request_id"] == given
    generated = json.loads(fetch("/whoami")[1])["request_id"]
    assert str(uuid.UUID(generated)) == generated
    # Not one token: replaced, so a client cannot write what it likes into every log.
    odd = json.loads(fetch("/whoami", {"X-Request-ID": "a b;c=" + "x" * 80})[1])["request_id"]
    assert str(uuid.UUID(odd)) == odd
    time.sleep(1)
    assert f"rid={generated}" in lb.check_output("journalctl -u haproxy --no-pager -n 100")


def test_a_client_cannot_choose_the_address_the_app_sees(lb) -> None:
    """Forwarding headers a client sends are dropped at the lb: the app, and its access log,
    see the address HAProxy saw (its log's %ci), whatever the client claimed."""
    rid = f"fwd-{uuid.uuid4()}"
    spoofed = {
        "X-Request-ID": rid,
        "X-Forwarded-For": "203.0.113.9",
        "Forwarded": "for=203.0.113.9;proto=https",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
    }
    served = json.loads(fetch("/whoami", spoofed)[1])
    time.sleep(1)
    line = lb.check_output(f"journalctl -u haproxy --no-pager -o cat -n 500 | grep 'rid={rid}'")
    seen_by_lb = line.split(":", 1)[0]
    assert served["client"] == seen_by_lb, (served, line)
    assert served["client"] != "203.0.113.9"
    node = get_host(served["host"])
    access = node.check_output(
        f"journalctl -u 'gunicorn@*' --no-pager -o cat --since '-2min' | grep 'rid={rid}'"
    )
    assert f"client={seen_by_lb}" in access, access
    assert "203.0.113.9" not in access, access


def test_maxconn_is_what_the_granted_open_files_hold(lb) -> None:
    granted = int(lb.check_output("awk '/^Max open files/ {print $5}' /proc/1/limits"))
    config = lb.file(CONFIG).content_string
    maxconn = int(
        next(x for x in config.splitlines() if x.strip().startswith("maxconn")).split()[1]
    )
    assert maxconn == min(60000, (granted - 1000) // 2)
    master = lb.check_output("systemctl show --value -p MainPID haproxy")
    limit = lb.check_output(f"awk '/^Max open files/ {{print $4}}' /proc/{master}/limits")
    assert int(limit) == 2 * maxconn + 1000 <= granted
    assert fetch("/healthz")[0] == 200


def instance_capacity(node: str) -> int:
    """Requests one gunicorn instance of `node` serves at once, from its rendered config."""
    conf = get_host(node).file("/etc/kit-app/gunicorn.conf.py").content_string
    workers = int(re.search(r"^workers = (\d+)$", conf, re.M)[1])  # type: ignore[index]
    threads = re.search(r"^threads = (\d+)$", conf, re.M)
    return workers * (int(threads[1]) if threads else 1)


def test_each_lb_sends_an_instance_its_share_less_a_slot_for_checks(lb) -> None:
    lbs = len(INVENTORY.get_hosts("lb"))
    capacity = {name: instance_capacity(name.rsplit("-", 1)[0]) for name in server_stats(lb)}
    limits = {name: int(row["slim"]) for name, row in server_stats(lb).items()}
    assert limits == {name: (cap - lbs) // lbs for name, cap in capacity.items()}
    assert all(limit >= 1 for limit in limits.values()), limits


def test_health_checks_take_a_dead_instance_out_within_3_seconds_by_config(lb) -> None:
    config = lb.file(CONFIG).content_string
    line = next(x for x in config.splitlines() if x.strip().startswith("default-server"))
    words = line.split()

    def seconds(key: str) -> float:
        return seconds_of(words[words.index(key) + 1])

    def seconds_of(value: str) -> float:
        return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))

    timeout = seconds_of(next(x for x in config.splitlines() if "timeout check" in x).split()[-1])
    fall = int(words[words.index("fall") + 1])
    # Worst case, an instance that hangs: the first failing check starts up to `inter`
    # after it hangs, each following one `fastinter` later, each waiting `timeout`.
    assert seconds("inter") + (fall - 1) * seconds("fastinter") + fall * timeout <= 3 + 1e-9


def test_stopped_instance_is_marked_down_and_no_request_fails(lb) -> None:
    """Even with a worker slow to exit: one left a thread running for 12 s, longer than a
    client waits here. Each worker closes its copy of the listening socket as it exits, so
    no connection waits in a backlog that nothing accepts any more: it is refused, and
    HAProxy sends the request to another instance."""
    node = get_host(APP_NODES[-1])
    server = f"{APP_NODES[-1]}-8002"
    node.check_output("curl -sf 'http://127.0.0.1:8002/_test/linger?s=12'")
    with request_stream() as outcomes:
        time.sleep(1)
        node.check_output("systemctl stop gunicorn@8002.service")
        try:
            elapsed = wait_for_status(lb, server, "DOWN")
            time.sleep(3)
        finally:
            node.check_output("systemctl start gunicorn@8002.service")
        wait_for_status(lb, server, "UP")
        time.sleep(1)
    print(f"{server} marked DOWN {elapsed:.2f}s after its unit was stopped; outcomes {outcomes}")
    assert outcomes["ok"] > 20
    assert set(outcomes) == {"ok"}, outcomes


def test_an_instance_whose_workers_opened_pools_stops_before_graceful_timeout(lb) -> None:
    """Workers that answered /readyz hold database pools; each closes them as it exits, so
    the instance stops on its own, no worker left for the master to kill at
    graceful_timeout."""
    node = get_host(APP_NODES[0])
    conf = node.file("/etc/kit-app/gunicorn.conf.py").content_string
    graceful = int(re.search(r"^graceful_timeout = (\d+)$", conf, re.M)[1])  # type: ignore[index]
    for _ in range(2 * instance_capacity(APP_NODES[0])):
        ready = json.loads(node.check_output("curl -sf http://127.0.0.1:8001/readyz"))
        assert ready["checks"]["database_writer"] == "ok", ready
    start = time.monotonic()
    node.check_output("systemctl stop gunicorn@8001.service")
    took = time.monotonic() - start
    node.check_output("systemctl start gunicorn@8001.service")
    wait_for_status(lb, f"{APP_NODES[0]}-8001", "UP")
    assert took < graceful, f"the stop took {took:.1f}s, graceful_timeout is {graceful}s"


@contextmanager
def saturating_clients(clients: int, path: str) -> Iterator[Counter[str]]:
    """`clients` threads, each sending `path` through the lb again and again until the block
    ends; yields a Counter of outcomes ('ok', 'status 503', 'TimeoutError', ...)."""
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                request = urllib.request.Request(LB_URL + path)
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    outcomes["ok" if response.status == 200 else f"status {response.status}"] += 1
            except urllib.error.HTTPError as error:
                outcomes[f"status {error.code}"] += 1
            except OSError as error:
                outcomes[type(error).__name__] += 1

    with clients_running(loop, clients, stop, join_timeout=40):
        yield outcomes


def test_busy_instances_stay_up_and_hung_ones_still_leave(lb) -> None:
    """Twice as many clients as this lb may send to the app tier at once, each asking for a
    1 s request: the overflow waits in HAProxy's queue, no busy instance is taken for dead,
    nobody gets an error. Under the same load an instance that hangs (SIGSTOP) still leaves
    rotation, and comes back when it resumes."""
    stats = server_stats(lb)
    slots = sum(int(row["slim"]) for row in stats.values())
    downs_before = {name: int(row["chkdown"]) for name, row in stats.items()}
    node, port = APP_NODES[0], 8001
    server = f"{node}-{port}"
    with saturating_clients(2 * slots, "/_test/sleep?s=1") as outcomes:
        time.sleep(12)
        busy = server_stats(lb)
        queued = backend_queue(lb)
        saturated = dict(outcomes)
        get_host(node).check_output(f"systemctl kill --signal=SIGSTOP gunicorn@{port}.service")
        try:
            wait_for_status(lb, server, "DOWN", timeout=10)
        finally:
            get_host(node).check_output(f"systemctl kill --signal=SIGCONT gunicorn@{port}.service")
        wait_for_status(lb, server, "UP")
    print(f"{2 * slots} clients on {slots} slots: {saturated}, queued {queued}; "
          f"with one instance hung: {dict(outcomes)}")  # fmt: skip
    assert queued > 0, "the overflow should wait in HAProxy's queue"
    assert saturated.get("ok", 0) > slots, saturated
    assert set(saturated) == {"ok"}, saturated
    assert {name: int(row["chkdown"]) for name, row in busy.items()} == downs_before, (
        "an instance busy with requests was taken for dead"
    )
    assert set(outcomes) == {"ok"}, outcomes


def test_every_request_of_a_burst_is_in_the_access_log(lb) -> None:
    tag = uuid.uuid4().hex
    total = 600
    dropped = dropped_logs(lb)

    def one(n: int) -> int:
        return fetch("/whoami", {"X-Request-ID": f"{tag}-{n}"})[0]

    with ThreadPoolExecutor(max_workers=60) as pool:
        statuses = list(pool.map(one, range(total)))
    assert statuses == [200] * total
    time.sleep(2)
    logged = lb.check_output(
        f"journalctl -u haproxy --since '-5min' -o cat | grep -c 'rid={tag}-' || true"
    )
    assert int(logged) == total
    assert dropped_logs(lb) == dropped


def test_reload_during_a_steady_request_stream_fails_no_request(lb) -> None:
    master = lb.check_output("systemctl show --value -p MainPID haproxy")
    with request_stream() as outcomes:
        for _ in range(3):
            time.sleep(1.5)
            lb.check_output("systemctl reload haproxy")
        time.sleep(1.5)
    print(f"requests during 3 reloads: {outcomes}")
    assert outcomes["ok"] > 20
    assert set(outcomes) == {"ok"}, outcomes
    assert lb.check_output("systemctl show --value -p MainPID haproxy") == master


def test_broken_value_fails_the_play_and_leaves_the_running_config(lb) -> None:
    checksum = lb.check_output(f"sha256sum {CONFIG}")
    master = lb.check_output("systemctl show --value -p MainPID haproxy")
    result = run_playbook(
        "site.yml", "--tags", "haproxy", "-e", "haproxy_health_check_inter=30parsecs"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Render haproxy.cfg" in output
    assert "failed to validate" in output
    assert lb.check_output(f"sha256sum {CONFIG}") == checksum
    assert lb.check_output("systemctl show --value -p MainPID haproxy") == master
    assert fetch("/healthz")[0] == 200


def test_a_cookie_set_over_https_is_secure_and_over_http_left_as_the_app_set_it(
    lb: testinfra.host.Host,
) -> None:
    """The example application sets its session cookie without Secure; the lb adds it on
    HTTPS only, so a browser never sends the session back over plain HTTP."""

    def set_cookie(url: str) -> str:
        headers = lb.check_output(f"curl -sk -D - -o /dev/null {url}").lower()
        return next(line for line in headers.splitlines() if line.startswith("set-cookie:"))

    assert "; secure" in set_cookie("https://127.0.0.1/session")
    assert "secure" not in set_cookie("http://127.0.0.1/session")
