"""What the benchmarks read off the running local stack: its inventory, HAProxy's runtime
API, and the CPU time of its containers."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOCKET = "/run/haproxy/admin.sock"


def run(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    # From the repository's root, whatever the caller's directory: Ansible reads ansible.cfg
    # (the roles' path) from the working directory.
    result = subprocess.run(
        argv, capture_output=True, text=True, input=stdin, check=False, cwd=ROOT
    )
    if check and result.returncode != 0:
        # Ansible prints its errors on stdout: the end of it too.
        output = result.stdout[-3000:] + result.stderr
        raise SystemExit(f"{' '.join(argv[:4])} ...: exit {result.returncode}\n{output}")
    return result.stdout


def inventory(*groups: str) -> dict[str, list[tuple[str, str]]]:
    """(host, private_ip) of each named group of the local inventory (lb_hosts.py included)."""
    data = json.loads(run(str(ROOT / ".venv/bin/ansible-inventory"), "-i",
                          str(ROOT / "inventories/local"), "--list"))  # fmt: skip
    hostvars = data["_meta"]["hostvars"]
    return {
        group: [(h, hostvars[h]["private_ip"]) for h in sorted(data[group]["hosts"])]
        for group in groups
    }


def haproxy(lb: str, command: str) -> str:
    """One command to the runtime API of the HAProxy in container `lb`."""
    return run("docker", "exec", "-i", lb, "socat", "stdio", SOCKET, stdin=command + "\n")


def servers(lb: str) -> dict[str, dict[str, str]]:
    """`show stat` rows of the app backend's servers, by server name."""
    rows = csv.DictReader(io.StringIO(haproxy(lb, "show stat").lstrip("# ")))
    return {r["svname"]: r for r in rows if r["pxname"] == "app" and r["svname"] != "BACKEND"}


def cpu_seconds(container: str) -> float:
    """CPU time the container has used so far, from its cgroup (v2 or v1)."""
    cid = run("docker", "inspect", "-f", "{{.Id}}", container).strip()
    for path, pattern, scale in (
        (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", r"^usage_usec (\d+)", 1e6),
        (f"/sys/fs/cgroup/docker/{cid}/cpu.stat", r"^usage_usec (\d+)", 1e6),
        (f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", r"^(\d+)", 1e9),
    ):
        if Path(path).exists():
            match = re.search(pattern, Path(path).read_text(), re.M)
            return int(match.group(1)) / scale if match else 0.0
    raise SystemExit(f"no cgroup CPU accounting found for {container}")
