#!/usr/bin/env python3
"""The local stack's load balancers: kit-lb-1 .. kit-lb-N, N a setting, not an edit.

An Ansible inventory script, read beside hosts.yml. N comes from KIT_LB_COUNT, else from
the count `make up LB=N` saved in .cache/local-stack/lb_count, else 1. Each lb is at
172.30.213.(10 + n) on the stack network.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SAVED = Path(__file__).resolve().parents[2] / ".cache" / "local-stack" / "lb_count"
MAX_LBS = 9  # addresses 172.30.213.11-19; .21 is the first app node


def lb_count() -> int:
    raw = os.environ.get("KIT_LB_COUNT", "").strip()
    origin = "KIT_LB_COUNT"
    if not raw and SAVED.is_file():
        raw, origin = SAVED.read_text().strip(), str(SAVED)
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LBS:
        sys.exit(f"{origin}: expected a number of lb hosts from 1 to {MAX_LBS}, found {raw!r}")
    return int(raw)


def inventory(count: int) -> dict[str, object]:
    hosts = [f"kit-lb-{n}" for n in range(1, count + 1)]
    return {
        "local": {"children": ["lb"]},
        "lb": {"hosts": hosts},
        "_meta": {
            "hostvars": {
                host: {"private_ip": f"172.30.213.{10 + n}"}
                for n, host in enumerate(hosts, start=1)
            }
        },
    }


def main(argv: list[str]) -> int:
    data = inventory(lb_count())
    if len(argv) > 1 and argv[1] == "--host":
        print(json.dumps(data["_meta"]["hostvars"].get(argv[2], {})))  # type: ignore[index]
    else:
        print(json.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
