"""The monitoring role on one host: Prometheus scrapes what the inventory implies, loads every
alert of the kit's rules, and an alert goes from a stopped exporter to Alertmanager and back."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

# A GET from inside the container (the base image has Python, not curl).
FETCH = (
    "python3 -c 'import sys, urllib.request;"
    " print(urllib.request.urlopen(sys.argv[1]).read().decode())'"
)
RULES = Path(__file__).resolve().parents[3] / "templates" / "rules" / "kit.rules.yml.j2"


def api(host, port: int, path: str) -> Any:
    address = host.interface("eth0").addresses[0]
    return json.loads(host.check_output(f"{FETCH} %s", f"http://{address}:{port}{path}"))


def wait_for(what: str, check, within: float = 60.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"{what}: not within {within:.0f} s"
        time.sleep(1)
    return time.monotonic() - start


def targets(host) -> dict[str, str]:
    active = api(host, 9090, "/api/v1/targets?state=active")["data"]["activeTargets"]
    return {t["labels"]["job"]: t["health"] for t in active}


def kit_alerts(host) -> list[dict[str, Any]]:
    return [
        a for a in api(host, 9093, "/api/v2/alerts") if a["labels"]["alertname"] == "KitTargetDown"
    ]


def test_every_target_the_inventory_implies_is_up(host) -> None:
    wait_for("every target UP", lambda: set(targets(host).values()) == {"up"})
    assert targets(host) == {"node": "up", "prometheus": "up", "alertmanager": "up"}


def test_every_alert_of_the_rules_is_loaded(host) -> None:
    groups = api(host, 9090, "/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.MULTILINE))
    alertmanagers = api(host, 9090, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert len(alertmanagers) == 1


def test_a_stopped_exporter_fires_in_alertmanager_and_resolves(host) -> None:
    assert kit_alerts(host) == []
    host.check_output("systemctl stop prometheus-node-exporter.service")
    try:
        wait_for("KitTargetDown in Alertmanager", lambda: len(kit_alerts(host)) == 1)
        alert = kit_alerts(host)[0]
        assert alert["labels"]["job"] == "node"
        assert alert["labels"]["host"] == "kit-molecule-monitoring"
        assert alert["receivers"] == [{"name": "kit"}]
    finally:
        host.check_output("systemctl start prometheus-node-exporter.service")
    wait_for("KitTargetDown resolved", lambda: kit_alerts(host) == [])


def test_the_pages_listen_on_the_private_address_only(host) -> None:
    listening = host.check_output("ss -Hltn")
    address = host.interface("eth0").addresses[0]
    for port in (9090, 9093):
        assert re.findall(rf"\s(\S+):{port}\s", listening) == [address], port


def test_prometheus_serves_the_page_of_graphs(host) -> None:
    address = host.interface("eth0").addresses[0]
    page = host.check_output(f"{FETCH} %s", f"http://{address}:9090/consoles/kit.html")
    assert '<script type="application/json" id="kit-panels">' in page
