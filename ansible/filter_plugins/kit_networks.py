"""Filters of the kit's playbooks for networks written in an inventory."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

# Reserved for examples in documentation (RFC 5737, RFC 3849): no real client has them.
DOCUMENTATION_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = (
    IPv4Network("192.0.2.0/24"),
    IPv4Network("198.51.100.0/24"),
    IPv4Network("203.0.113.0/24"),
    IPv6Network("2001:db8::/32"),
)


def documentation_networks(networks: list[str]) -> list[str]:
    """The entries of networks (CIDR or single addresses) that lie inside a documentation
    network: ["198.51.100.0/24", "10.0.0.0/8"] -> ["198.51.100.0/24"]."""
    found = []
    for entry in networks:
        try:
            network = ip_network(str(entry).strip(), strict=False)
        except ValueError as error:
            raise ValueError(f"expected a network (CIDR) or an address, found {entry!r}") from error
        if any(
            network.version == doc.version and network.subnet_of(doc)  # type: ignore[arg-type]
            for doc in DOCUMENTATION_NETWORKS
        ):
            found.append(str(entry))
    return found


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"documentation_networks": documentation_networks}
