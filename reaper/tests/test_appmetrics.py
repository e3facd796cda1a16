"""The request metrics the hooks keep in prometheus_client's multiprocess mode, read the
way the reaper serves them: a real gunicorn, its workers recycling under max_requests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import Gunicorn, in_background, wait_for
from prometheus_client import generate_latest

from kit_reaper.metrics import Metrics


def samples(root: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the reaper would serve for `root`, keyed by name and sorted labels."""
    metrics = Metrics()
    metrics.add_app_metrics(root)
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name.startswith(("kit_app_", "testapp_")):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_total(root: Path, route: str, status: str = "200") -> float:
    labels = (("gunicorn_instance", "test"), ("method", "GET"), ("route", route))
    key = ("kit_app_requests_total", tuple(sorted((*labels, ("status", status)))))
    return samples(root).get(key, 0.0)


def test_every_request_is_counted_across_recycled_workers(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    root = tmp_path / "metrics"
    server = start_gunicorn(workers=2, max_requests=5, metrics_dir=root / "test")
    pids = set()
    for _ in range(40):
        response = server.get("/pid")
        assert response.status == 200
        pids.add(response.pid)
    assert len(pids) >= 8, "workers did not recycle: max_requests not applied"

    wait_for("all 40 requests counted", lambda: requests_total(root, "/pid") == 40 or None)
    found = samples(root)
    count = (
        "kit_app_request_duration_seconds_count",
        (("gunicorn_instance", "test"), ("route", "/pid")),
    )
    assert found[count] == 40
    # The app's own metrics too: a summary adds up, a "max" gauge keeps the largest.
    assert found[("testapp_pid_seconds_count", ())] == 40
    assert found[("testapp_pid_latest", ())] == max(pids)
    # Dead workers' files are folded: the live workers' files and an archive per kind,
    # not a set per worker that ever lived.
    files = {p.name for p in (root / "test").glob("*.db")}
    archives = {f"{kind}_archive.db" for kind in ("counter", "histogram", "summary", "gauge_max")}
    assert archives <= files
    assert len(files) <= len(archives) + 5 * server.workers, sorted(files)


def test_route_status_and_in_flight(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    root = tmp_path / "metrics"
    server = start_gunicorn(workers=2, metrics_dir=root / "test")
    assert server.get("/nowhere").status == 404
    assert server.get("/boom").status == 500
    wait_for("the 404 counted", lambda: requests_total(root, "/unknown", "404") == 1 or None)
    wait_for("the 500 counted", lambda: requests_total(root, "/boom", "500") == 1 or None)

    in_flight = ("kit_app_requests_in_flight", (("gunicorn_instance", "test"),))
    slow = in_background(server, "/sleep?s=2")
    wait_for("one request in flight", lambda: samples(root).get(in_flight) == 1 or None)
    slow.join()
    wait_for("none in flight", lambda: samples(root).get(in_flight) == 0 or None)


def test_a_restarted_instance_starts_from_zero(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    root = tmp_path / "metrics"
    (root / "test").mkdir(parents=True)
    (root / "test" / "counter_12345.db").write_bytes(b"stale")
    server = start_gunicorn(workers=1, metrics_dir=root / "test")
    assert not (root / "test" / "counter_12345.db").exists()
    server.get("/pid")
    wait_for("the request counted", lambda: requests_total(root, "/pid") == 1 or None)
    metrics = Metrics()
    metrics.add_app_metrics(root)
    assert b'kit_app_requests_total{gunicorn_instance="test"' in generate_latest(metrics.registry)


def test_no_directory_serves_nothing(tmp_path: Path) -> None:
    assert samples(tmp_path / "absent") == {}
