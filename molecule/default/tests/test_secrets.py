"""A `site.yml --check --diff` run, as the README recommends before a change, shows what
would change and prints no secret, even where the files that hold them would change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from conftest import INVENTORY, all_secrets, get_host, run_playbook, secret

ROOT = Path(__file__).resolve().parents[3]


def test_check_diff_shows_changes_and_no_secret() -> None:
    redis_defaults = yaml.safe_load((ROOT / "roles/redis/defaults/main.yml").read_text())
    # A change to each file that holds a secret, or sits beside one: the app's environment,
    # HAProxy's configuration (the stats user), Redis's configuration and its users.
    changes = {
        "app_environment": {"KIT_CHECK_DIFF": "1"},
        "haproxy_retries": 2,
        "redis_tcp_keepalive": 301,
        "redis_app_acl": {
            **redis_defaults["redis_app_acl"],
            "cache": redis_defaults["redis_app_acl"]["cache"] + " -lastsave",
        },
    }
    # Every layer that holds a secret: the base system and the firewall hold none (public
    # keys, settings and addresses), and the full-topology converge already ran them.
    result = run_playbook(
        "site.yml", "--check", "--diff", "--skip-tags", "common,firewall", "-e", json.dumps(changes)
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    # The run shows the changes it would make where they hold no secret.
    assert "+    retries 2" in output
    assert "+tcp-keepalive 301" in output
    # And no secret, in any form a file holds it: the value, percent-encoded in a URL
    # (the generated ones need no encoding), or the SHA-256 Redis's users file keeps.
    values = all_secrets()
    assert len(values) >= 9, sorted(values)
    leaked = [name for name, value in values.items() if value in output]
    assert not leaked, f"--check --diff printed {leaked}"
    hashes = {name: hashlib.sha256(value.encode()).hexdigest() for name, value in values.items()}
    leaked_hashes = [name for name, digest in hashes.items() if digest in output]
    assert not leaked_hashes, f"--check --diff printed the SHA-256 of {leaked_hashes}"


def test_the_stats_password_is_stored_hashed_and_still_opens_the_page() -> None:
    lb = get_host(INVENTORY.get_hosts("lb")[0])
    password = secret("haproxy_stats_password")
    assert password not in lb.file("/etc/haproxy/haproxy.cfg").content_string
    page = "http://127.0.0.1:8404/stats"
    opened = lb.run("curl -s -o /dev/null -w '%%{http_code}' -u %s %s", f"stats:{password}", page)
    refused = lb.run("curl -s -o /dev/null -w '%%{http_code}' -u %s %s", "stats:wrong", page)
    assert (opened.stdout, refused.stdout) == ("200", "401")
