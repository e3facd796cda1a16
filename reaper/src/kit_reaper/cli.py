"""`kit-reaper`: run the reaper on this node.

    kit-reaper --config /etc/kit-reaper/reaper.toml           # run until SIGTERM/SIGINT
    kit-reaper --config reaper.toml --dry-run                  # report, signal nothing
    kit-reaper --config reaper.toml --once                     # one scan, then exit
    kit-reaper --config reaper.toml --check                    # validate the config, exit

Logs one JSON object per line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from kit_reaper import config as config_module
from kit_reaper import systemd
from kit_reaper.metrics import Metrics
from kit_reaper.reaper import Reaper, json_emitter

DEFAULT_CONFIG = Path("/etc/kit-reaper/reaper.toml")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kit-reaper",
        description="Kill gunicorn requests past their deadline; recycle workers whose "
        "private memory grew past a limit.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"TOML config file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="log what would be done, signal nothing (overrides the file)",
    )
    parser.add_argument("--once", action="store_true", help="scan once and exit")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as e:
        print(f"kit-reaper: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        config = dataclasses.replace(config, dry_run=True)
    if args.check:
        print(f"kit-reaper: {args.config} is valid", file=sys.stderr)
        return 0

    metrics = Metrics()
    reaper = Reaper(
        config,
        emit=json_emitter(sys.stderr),
        metrics=metrics,
        heartbeat=lambda: systemd.notify("WATCHDOG=1"),
    )
    if args.once:
        reaper.scan()
        reaper.close()
        return 0
    if config.metrics.port is not None:
        if config.metrics.app_dir is not None:
            metrics.add_app_metrics(config.metrics.app_dir)
        metrics.serve(config.metrics.address, config.metrics.port)

    stop = threading.Event()

    def handle_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle_stop)
    signal.signal(signal.SIGINT, handle_stop)
    # SIGABRT (systemd's watchdog) writes every thread's stack to stderr before the abort.
    faulthandler.enable()
    systemd.notify("READY=1")
    reaper.run(stop)
    return 0
