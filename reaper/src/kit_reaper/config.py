"""The reaper's configuration: a TOML file read with tomllib, checked key by key.

    scoreboard_dir = "/dev/shm/kit-reaper"
    scan_interval_s = 1.0
    dry_run = false
    stacks = true                    # py-spy dump of a worker before it is killed, if installed

    [deadline]
    default_s = 120
    methods = { POST = 600 }
    paths = { "/reports/" = 900 }    # longest prefix wins over the method
    abort_grace_s = 5                # SIGABRT, then SIGKILL this long after

    [memory]
    limit_mb = 1024                  # private memory (USS) per worker; 0 turns recycling off
    samples = 3                      # consecutive samples over the limit before recycling
    recycle_budget = 1               # workers of one instance recycling at once
    drain_s = 30                     # SIGTERM, then SIGKILL this long after (or after the
                                     # request in flight's remaining deadline, if longer)
    recycle_idle = true              # false: wait until the worker takes a request

    [metrics]
    address = "127.0.0.1"
    port = 9405                      # leave out to serve no metrics
    app_dir = "/dev/shm/kit-metrics" # the workers' request metrics (kit_reaper.appmetrics),
                                     # one directory per instance (none there: none served)

An error names the key, what was expected and what was found.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kit_reaper.policy import Deadlines

DEFAULT_SCOREBOARD_DIR = Path("/dev/shm/kit-reaper")
DEFAULT_APP_METRICS_DIR = Path("/dev/shm/kit-metrics")
_MIB = 1024 * 1024


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class DeadlineConfig:
    default_s: float = 120.0
    methods: Mapping[str, float] = field(default_factory=lambda: {"POST": 600.0})
    paths: Mapping[str, float] = field(default_factory=dict)
    abort_grace_s: float = 5.0

    def deadlines(self) -> Deadlines:
        return Deadlines(default_s=self.default_s, methods=self.methods, paths=self.paths)

    @property
    def longest_s(self) -> float:
        return max([self.default_s, *self.methods.values(), *self.paths.values()])


@dataclass(frozen=True)
class MemoryConfig:
    limit_mb: float = 1024.0
    samples: int = 3
    recycle_budget: int = 1
    drain_s: float = 30.0
    # Idle workers over the limit are recycled too (nothing is in flight: the cheapest
    # moment); false waits until the worker takes a request, then recycles it gracefully.
    recycle_idle: bool = True

    @property
    def enabled(self) -> bool:
        return self.limit_mb > 0

    @property
    def limit_bytes(self) -> int:
        return int(self.limit_mb * _MIB)


@dataclass(frozen=True)
class MetricsConfig:
    address: str = "127.0.0.1"
    port: int | None = None
    # Every worker's USS for the gauge is read this often; candidates (RSS over the
    # limit) are read every scan regardless.
    uss_interval_s: float = 15.0
    # gunicorn's request metrics, a directory per instance (kit_reaper.appmetrics).
    app_dir: Path | None = DEFAULT_APP_METRICS_DIR


@dataclass(frozen=True)
class Config:
    scoreboard_dir: Path = DEFAULT_SCOREBOARD_DIR
    scan_interval_s: float = 1.0
    dry_run: bool = False
    stacks: bool = True
    deadline: DeadlineConfig = field(default_factory=DeadlineConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


def load(path: Path) -> Config:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: expected a TOML config file, found no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: expected valid TOML, found: {e}") from None
    return parse(data, source=str(path))


def parse(data: Mapping[str, object], source: str = "config") -> Config:
    top = _Table(data, source, "")
    deadline = top.table("deadline")
    memory = top.table("memory")
    metrics = top.table("metrics")
    config = Config(
        scoreboard_dir=Path(top.string("scoreboard_dir", str(DEFAULT_SCOREBOARD_DIR))),
        scan_interval_s=top.number("scan_interval_s", 1.0, minimum=0.01),
        dry_run=top.boolean("dry_run", False),
        stacks=top.boolean("stacks", True),
        deadline=DeadlineConfig(
            default_s=deadline.number("default_s", 120.0, minimum=0.01),
            methods={
                method.upper(): seconds
                for method, seconds in deadline.seconds_table("methods", {"POST": 600.0}).items()
            },
            paths=deadline.seconds_table("paths", {}),
            abort_grace_s=deadline.number("abort_grace_s", 5.0, minimum=0.0),
        ),
        memory=MemoryConfig(
            limit_mb=memory.number("limit_mb", 1024.0, minimum=0.0),
            samples=memory.integer("samples", 3, minimum=1),
            recycle_budget=memory.integer("recycle_budget", 1, minimum=1),
            drain_s=memory.number("drain_s", 30.0, minimum=0.0),
            recycle_idle=memory.boolean("recycle_idle", True),
        ),
        metrics=MetricsConfig(
            address=metrics.string("address", "127.0.0.1"),
            port=metrics.optional_integer("port", minimum=0, maximum=65535),
            uss_interval_s=metrics.number("uss_interval_s", 15.0, minimum=0.0),
            app_dir=Path(metrics.string("app_dir", str(DEFAULT_APP_METRICS_DIR))),
        ),
    )
    for table in (top, deadline, memory, metrics):
        table.reject_unknown()
    for prefix in config.deadline.paths:
        if not prefix.startswith("/"):
            raise ConfigError(
                f"{source}: deadline.paths: expected path prefixes starting with '/', "
                f"found {prefix!r}"
            )
    return config


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


class _Table:
    """One TOML table, read key by key; remembers which keys were read."""

    def __init__(self, data: Mapping[str, object], source: str, prefix: str) -> None:
        self._data = data
        self._source = source
        self._prefix = prefix
        self._read: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def _error(self, key: str, expected: str, found: object) -> ConfigError:
        return ConfigError(
            f"{self._source}: {self._key(key)}: expected {expected}, found {_describe(found)}"
        )

    def _get(self, key: str) -> object:
        self._read.add(key)
        return self._data.get(key)

    def table(self, key: str) -> _Table:
        value = self._get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._error(key, "a table", value)
        return _Table(value, self._source, f"{self._key(key)}.")

    def string(self, key: str, default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._error(key, "a non-empty string", value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._error(key, "true or false", value)
        return value

    def number(self, key: str, default: float, *, minimum: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        return self._check_number(key, value, minimum)

    def _check_number(self, key: str, value: object, minimum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"a number >= {minimum:g}", value)
        if value < minimum:
            raise self._error(key, f"a number >= {minimum:g}", value)
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self.optional_integer(key, minimum=minimum)
        return default if value is None else value

    def optional_integer(self, key: str, *, minimum: int, maximum: int | None = None) -> int | None:
        value = self._get(key)
        if value is None:
            return None
        expected = f"an integer >= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(key, expected, value)
        if value < minimum or (maximum is not None and value > maximum):
            raise self._error(key, expected, value)
        return value

    def seconds_table(self, key: str, default: Mapping[str, float]) -> dict[str, float]:
        value = self._get(key)
        if value is None:
            return dict(default)
        if not isinstance(value, dict):
            raise self._error(key, "a table of seconds, e.g. { POST = 600 }", value)
        inner = _Table(value, self._source, f"{self._key(key)}.")
        return {name: inner._check_number(name, seconds, 0.01) for name, seconds in value.items()}

    def reject_unknown(self) -> None:
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            where = self._prefix.rstrip(".") or "the top level"
            raise ConfigError(
                f"{self._source}: {self._key(unknown[0])}: expected one of "
                f"{', '.join(sorted(self._read))} in {where}, found unknown key {unknown[0]!r}"
            )
