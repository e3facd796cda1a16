"""The reaper watching real gunicorn instances on one node."""

from __future__ import annotations

import json
import time
import uuid


def reaper_events(host, since: str) -> list[dict]:
    out = host.check_output(f"journalctl -u kit-reaper --no-pager -o cat --since '{since}'")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_reaper_runs_as_the_app_user_with_a_valid_config(host) -> None:
    assert host.service("kit-reaper").is_running
    assert host.service("kit-reaper").is_enabled
    pid = host.check_output("systemctl show --value -p MainPID kit-reaper")
    assert host.check_output(f"ps -o user= -p {pid}") == "kit-app"
    check = host.run(
        "/srv/kit-app/current/venv/bin/kit-reaper --check --config /etc/kit-reaper/reaper.toml"
    )
    assert check.rc == 0, check.stderr


def test_every_instance_keeps_a_scoreboard(host) -> None:
    boards = host.check_output("ls /dev/shm/kit-reaper").split()
    for port in (8001, 8002):
        master = host.check_output(f"systemctl show --value -p MainPID gunicorn@{port}")
        assert f"{port}.{master}.scoreboard" in boards


def test_stuck_request_is_killed_and_logged_while_others_are_served(host) -> None:
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    rid = f"stuck-{uuid.uuid4()}"
    start = time.monotonic()
    stuck = host.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' -H 'X-Request-ID: {rid}' "
        "--max-time 60 'http://127.0.0.1:8001/_test/sleep?s=50'"
    )
    elapsed = time.monotonic() - start
    # Killed well before the 50 s it asked for; the worker's abort answers 500 or nothing.
    assert elapsed < 40, elapsed
    assert stuck.stdout in {"500", "502", "000"}, stuck.stdout
    kills = [e for e in reaper_events(host, since) if e.get("event") == "kill"]
    assert any(
        e["request_id"] == rid and e["path"] == "/_test/sleep" and e["instance"] == "8001"
        for e in kills
    ), kills
    # The instance still serves.
    assert host.check_output("curl -sf http://127.0.0.1:8001/healthz") == "ok"


def test_metrics_show_the_workers_and_the_kill(host) -> None:
    metrics = host.check_output("curl -sf http://127.0.0.1:9405/metrics")
    assert 'kit_reaper_workers{instance="8001",state="idle"}' in metrics
    assert "kit_reaper_kills_total" in metrics


def test_a_stalled_reaper_is_restarted_by_its_watchdog(host) -> None:
    """SIGSTOP stands for a reaper stuck in a scan: no WATCHDOG=1 for reaper_watchdog (3 s
    here), and systemd kills and restarts it."""
    show = "systemctl show --value -p MainPID -p NRestarts kit-reaper"
    pid, restarts = host.check_output(show).split()
    assert host.check_output("systemctl show --value -p WatchdogUSec kit-reaper") == "3s"
    host.check_output(f"kill -STOP {pid}")
    deadline = time.monotonic() + 30
    while host.check_output(show).split()[0] in (pid, "0"):
        assert time.monotonic() < deadline, "the stalled reaper was never restarted"
        time.sleep(0.5)
    new_restarts = host.check_output(show).split()[1]
    assert int(new_restarts) == int(restarts) + 1
    # Active again once the new reaper says READY=1 (Type=notify).
    while host.run("systemctl is-active kit-reaper").stdout.strip() != "active":
        assert time.monotonic() < deadline, "the restarted reaper never became ready"
        time.sleep(0.5)
    log = host.check_output("journalctl -u kit-reaper --no-pager -n 50 -o cat")
    assert "Watchdog timeout" in log
