"""Scaffold a new environment: `make env NAME=staging` (or `python scripts/new_env.py NAME`).

Renders templates/env/ into inventories/<NAME>/: an example inventory with one host per
group (or, with `--provider linode`, the dynamic inventory of the instances
ansible/provision.yml creates, and their description in `group_vars/all/linode.yml`),
`group_vars/all/kit.yml` (the environment's name and how Ansible connects), a vault
stub listing every `vault_*` secret the roles read, and for each group a group_vars file
with every variable of the roles site.yml applies to it, commented out at its default with
its description. Which roles run on which group is read from ansible/vars/topology.yml, the
variables from each role's meta/argument_specs.yml and defaults/main.yml, so a new role or
variable shows up without editing this script. Nothing is overwritten.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
VAULT = re.compile(r"\bvault_[a-z0-9_]+\b")
# The inventory's groups, in the order the example lists them; db has two child groups.
GROUPS: list[dict[str, Any]] = [
    {"name": "lb", "host": "lb", "index": 10},
    {"name": "app", "host": "app", "index": 20},
    {"name": "workers", "host": "workers", "index": 30},
    {"name": "redis", "host": "redis", "index": 40},
    {
        "name": "db",
        "children": [
            {"name": "db_primary", "host": "db", "index": 50},
            {"name": "db_replicas", "host": "db-replica", "index": 51},
        ],
    },
    {"name": "monitoring"},
    {"name": "etcd"},
]


class Refused(Exception):
    """The environment cannot be created as asked; the message says why."""


def roles_by_group(root: Path) -> dict[str, list[str]]:
    """The roles whose variables configure each group: those site.yml applies to it, and
    those they include, as ansible/vars/topology.yml declares them."""
    topology = yaml.safe_load((root / "ansible" / "vars" / "topology.yml").read_text())
    included: dict[str, list[str]] = topology.get("kit_roles_included") or {}
    out: dict[str, list[str]] = {}
    for group, roles in topology["kit_roles_by_group"].items():
        extra = [r for role in roles for r in included.get(role, [])]
        out[group] = list(dict.fromkeys([*roles, *extra]))
    return out


def commented(value: Any) -> list[str]:
    """A default as YAML lines (to be commented out)."""
    dumped = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=88)
    return dumped.removesuffix("...\n").rstrip("\n").splitlines()


def role_options(root: Path, role: str) -> list[dict[str, Any]]:
    spec = yaml.safe_load((root / "roles" / role / "meta" / "argument_specs.yml").read_text())
    defaults = yaml.safe_load((root / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    options = []
    for name, option in spec["argument_specs"]["main"]["options"].items():
        description = option.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        wrapped = textwrap.wrap(f"{description} ({option.get('type', 'str')})", width=88)
        default = commented({name: defaults[name]}) if name in defaults else [f"{name}:"]
        options.append({"name": name, "description": wrapped, "default": default})
    return options


def vault_variables(root: Path) -> list[str]:
    """Every vault_* variable a role's defaults read."""
    found: set[str] = set()
    for defaults in sorted((root / "roles").glob("*/defaults/main.yml")):
        found.update(VAULT.findall(defaults.read_text()))
    return sorted(found)


def render(name: str, output: Path, root: Path = ROOT, provider: str = "hosts") -> list[Path]:
    """Write the new environment into output; the files written."""
    if not NAME.match(name):
        raise Refused(
            f"NAME={name!r}: use a lowercase letter then lowercase letters, digits or '_'"
            " (at most 31 characters)"
        )
    if name == "local":
        raise Refused("NAME=local is the kit's own local environment; choose another name")
    if output.exists():
        raise Refused(f"{output} exists already; remove it or choose another NAME")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root / "templates" / "env"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    files: dict[Path, str] = {}
    if provider == "linode":
        files[output / "hosts.linode.yml"] = env.get_template("linode/hosts.linode.yml.j2").render(
            name=name
        )
        files[output / "group_vars" / "all" / "linode.yml"] = env.get_template(
            "linode/linode.yml.j2"
        ).render(name=name)
    else:
        files[output / "hosts.yml"] = env.get_template("hosts.yml.j2").render(
            name=name, groups=GROUPS
        )
    files |= {
        output / "group_vars" / "all" / "kit.yml": env.get_template("kit.yml.j2").render(
            name=name, provider=provider
        ),
        output / "group_vars" / "all" / "vault.yml": env.get_template("vault.yml.j2").render(
            name=name, vault=vault_variables(root)
        ),
    }
    for group, roles in roles_by_group(root).items():
        path = output / "group_vars" / ("all/roles.yml" if group == "all" else f"{group}.yml")
        files[path] = env.get_template("group_vars.yml.j2").render(
            name=name,
            group=group,
            roles=[{"name": role, "options": role_options(root, role)} for role in roles],
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the new environment's name, e.g. staging")
    parser.add_argument("--output", type=Path, help="where to write it (inventories/<name>)")
    parser.add_argument(
        "--provider",
        choices=["hosts", "linode"],
        default="hosts",
        help="hosts: a static inventory of hosts you have; linode: instances provision.yml creates",
    )
    options = parser.parse_args(argv)
    output = options.output or ROOT / "inventories" / options.name
    try:
        written = render(options.name, output, provider=options.provider)
    except Refused as refusal:
        print(f"make env: {refusal}", file=sys.stderr)
        return 2
    for path in written:
        print(f"  wrote {path}")
    first = (
        f"describe the instances in {output}/group_vars/all/linode.yml and create them with\n"
        f"  LINODE_ACCESS_TOKEN=... .venv/bin/ansible-playbook ansible/provision.yml -i {output}\n"
        if options.provider == "linode"
        else f"put your hosts in {output}/hosts.yml,\n"
    )
    print(
        f"Next: {first}set firewall_ssh_networks in {output}/group_vars/all/kit.yml, the secrets"
        f" in {output}/group_vars/all/vault.yml, encrypt it with\n"
        f"  .venv/bin/ansible-vault encrypt {output}/group_vars/all/vault.yml\n"
        f"and run (--vault-password-file FILE instead of --ask-vault-pass reads the password"
        f" from a file)\n"
        f"  .venv/bin/ansible-playbook ansible/site.yml -i {output} --ask-vault-pass"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
