"""systemd's notify protocol, the two messages the reaper sends: READY=1 once it scans, and
WATCHDOG=1 after every completed scan (the unit's WatchdogSec restarts a reaper that stops
sending it). One datagram to $NOTIFY_SOCKET (sd_notify(3)); no-op where it is unset, so the
reaper runs the same outside systemd. Written here rather than pulled in as a dependency:
the protocol is one sendto() and the libraries for it need systemd's C headers to build."""

from __future__ import annotations

import os
import socket


def notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send `message` to the service manager; False where there is none to tell."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket: a leading NUL byte
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), address)
    return True
