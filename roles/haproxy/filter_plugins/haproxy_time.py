"""HAProxy time values as seconds, for checks that compare them with other settings."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# HAProxy's time units; a bare number is in milliseconds.
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1e-3}
_TIME = re.compile(r"^\s*(\d+)\s*(us|ms|s|m|h|d|)\s*$")


def haproxy_seconds(value: str | int) -> float:
    """Seconds in an HAProxy time value: "620s" -> 620.0, "500ms" -> 0.5, 2000 -> 2.0."""
    match = _TIME.match(str(value))
    if match is None:
        raise ValueError(
            f"expected an HAProxy time (a number with us, ms, s, m, h or d), found {value!r}"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"haproxy_seconds": haproxy_seconds}
