"""The worker reaper on the app nodes, behind the load balancer."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

from conftest import INVENTORY, current_release, get_host, host_vars

LB_URL = str(host_vars(INVENTORY.get_hosts("lb")[0])["local_stack_lb_url"])
APP_NODES = sorted(INVENTORY.get_hosts("app"))


def test_a_reaper_watches_every_instance_on_every_app_node() -> None:
    for name in APP_NODES:
        node = get_host(name)
        assert node.service("kit-reaper").is_running
        boards = node.check_output("ls /dev/shm/kit-reaper").split()
        for port in (8001, 8002):
            master = node.check_output(f"systemctl show --value -p MainPID gunicorn@{port}")
            assert f"{port}.{master}.scoreboard" in boards


def test_sleep_through_the_lb_past_its_deadline_is_killed_and_logged_on_its_node() -> None:
    since = get_host(APP_NODES[0]).check_output("date '+%Y-%m-%d %H:%M:%S'")
    rid = f"stuck-{uuid.uuid4()}"
    request = urllib.request.Request(f"{LB_URL}/_test/sleep?s=50", headers={"X-Request-ID": rid})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    elapsed = time.monotonic() - start
    # The deadline for /_test/sleep is 5 s here: killed long before the 50 s asked for.
    assert elapsed < 40, elapsed
    assert status >= 500, status
    kills = []
    for name in APP_NODES:
        out = get_host(name).check_output(
            f"journalctl -u kit-reaper --no-pager -o cat --since '{since}'"
        )
        events = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        kills += [(name, e) for e in events if e.get("event") == "kill"]
    mine = [(name, e) for name, e in kills if e["request_id"] == rid]
    assert mine, kills
    name, event = mine[0]
    assert event["path"] == "/_test/sleep"
    assert event["age_s"] >= 5
    # py-spy, shipped in the release, read the stuck worker's stacks before the kill.
    assert "sleep (kit_app/web.py:" in (event["stack"] or ""), event["stack"]
    print(f"killed on {name} after {event['age_s']}s; client saw {status} after {elapsed:.1f}s")


def test_the_reaper_runs_the_current_release_on_every_node() -> None:
    """The reaper runs kit_reaper from the app's release: after the deploys and rollbacks
    the earlier checks made, it was restarted onto each node's current release."""
    for name in APP_NODES:
        node = get_host(name)
        pid = node.check_output("systemctl show -p MainPID --value kit-reaper.service")
        command = node.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
        assert f"/releases/{current_release(name)}/" in command, (name, command)
