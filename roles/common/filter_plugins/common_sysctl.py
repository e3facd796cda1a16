"""Kernel settings: which of the wanted values differ from those in force."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def common_sysctl_differences(in_force: Iterable[str], wanted: Mapping[str, Any]) -> list[str]:
    """Readable lines, one per wanted setting whose value in force differs.

    `in_force` is what `sysctl -e NAME...` printed (`name = value` lines; a name the kernel
    does not have is missing). Whitespace inside a value counts once, as sysctl prints tabs
    between the numbers of a vector setting such as net.ipv4.tcp_rmem.
    """
    have: dict[str, str] = {}
    for line in in_force:
        name, sep, value = line.partition(" = ")
        if sep:
            have[name.strip()] = " ".join(value.split())
    out = []
    for name, value in sorted(wanted.items()):
        current = have.get(name, "absent")
        if current != " ".join(str(value).split()):
            out.append(f"{name} is {current}, wanted {value}")
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"common_sysctl_differences": common_sysctl_differences}
