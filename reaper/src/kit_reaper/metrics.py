"""Prometheus metrics of the reaper, in a registry of its own."""

from __future__ import annotations

import contextlib
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from kit_reaper.appmetrics import Collector


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.workers = Gauge(
            "kit_reaper_workers",
            "gunicorn workers seen on the scoreboard, busy (a request in flight) or idle",
            ["instance", "state"],
            registry=self.registry,
        )
        self.kills = Counter(
            "kit_reaper_kills",
            "Workers killed: SIGABRT past a request deadline, SIGKILL after a grace or drain",
            ["instance", "reason"],
            registry=self.registry,
        )
        self.recycles = Counter(
            "kit_reaper_recycles",
            "Workers recycled (SIGTERM, graceful) for their private memory",
            ["instance", "reason"],
            registry=self.registry,
        )
        self.private_bytes = Gauge(
            "kit_reaper_worker_private_bytes",
            "Private memory (USS: Private_Clean + Private_Dirty) of a worker, last sample",
            ["instance", "pid"],
            registry=self.registry,
        )
        self.scan_seconds = Gauge(
            "kit_reaper_scan_seconds", "Duration of the last scan", registry=self.registry
        )
        self.last_scan = Gauge(
            "kit_reaper_last_scan_timestamp_seconds",
            "When the last completed scan ended (Unix time): a stalled reaper stops moving it",
            registry=self.registry,
        )
        self._instances: set[str] = set()
        self._workers: set[tuple[str, str]] = set()

    def set_workers(self, instance: str, busy: int, idle: int) -> None:
        self.workers.labels(instance, "busy").set(busy)
        self.workers.labels(instance, "idle").set(idle)

    def set_private(self, instance: str, pid: int, value: int) -> None:
        self.private_bytes.labels(instance, str(pid)).set(value)

    def retain(self, instances: set[str], workers: set[tuple[str, int]]) -> None:
        """Drop the series of instances and workers no longer on any scoreboard."""
        for instance in self._instances - instances:
            for state in ("busy", "idle"):
                self.workers.remove(instance, state)
        self._instances = set(instances)
        live = {(instance, str(pid)) for instance, pid in workers}
        for labels in self._workers - live:
            with contextlib.suppress(KeyError):
                self.private_bytes.remove(*labels)
        self._workers = live

    def add_app_metrics(self, root: Path) -> None:
        """Serve the gunicorn workers' request metrics too (kit_reaper.appmetrics)."""
        self.registry.register(Collector(root))

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)
