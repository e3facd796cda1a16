"""The READMEs name what exists: Makefile targets, files, environment variables, labels."""

from __future__ import annotations

import re
import subprocess

import yaml
from conftest import ROOT

README = (ROOT / "README.md").read_text()
TRACKED = subprocess.run(
    ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
).stdout.split()


def test_every_make_target_is_in_the_readme_table() -> None:
    targets = re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(), flags=re.M)
    rows = [line for line in README.splitlines() if line.startswith("| `make ")]
    missing = [t for t in targets if not any(f"`make {t}" in row for row in rows)]
    assert not missing, f"README's target table lacks {missing}"


def test_every_markdown_file_a_document_names_exists() -> None:
    names = {path.rsplit("/", 1)[-1] for path in TRACKED}
    for doc in (path for path in TRACKED if path.endswith(".md")):
        text = (ROOT / doc).read_text()
        for cited in re.findall(r"[A-Za-z0-9_./-]+\.md\b", text):
            assert cited.rsplit("/", 1)[-1] in names, f"{doc} cites {cited}, not in the repository"


def test_the_app_skeleton_readme_lists_exactly_the_settings_that_exist() -> None:
    readme = set(re.findall(r"`(KIT_[A-Z_]+)", (ROOT / "app_skeleton" / "README.md").read_text()))
    # Every KIT_* name the app role writes (vars/main.yml, templates/env.j2).
    rendered = set(
        yaml.safe_load((ROOT / "roles/app/vars/main.yml").read_text())["__app_kit_names"]
    )
    units = "".join(path.read_text() for path in ROOT.glob("roles/*/templates/*@.service.j2"))
    set_by_units = set(re.findall(r"Environment=(KIT_[A-Z_]+)=", units))
    read = {
        name
        for path in (ROOT / "app_skeleton" / "src").rglob("*.py")
        for name in re.findall(r"environ\.get\(\"(KIT_[A-Z_]+)\"", path.read_text())
    }
    assert rendered | set_by_units | read <= readme, sorted(
        (rendered | set_by_units | read) - readme
    )
    assert readme <= rendered | set_by_units | read, sorted(
        readme - (rendered | set_by_units | read)
    )


def test_the_linode_labels_the_readme_shows_are_the_ones_provision_creates() -> None:
    template = (ROOT / "templates" / "env" / "linode" / "linode.yml.j2").read_text()
    groups = yaml.safe_load(re.sub(r"\{\{.*?\}\}", "x", template))["linode_hosts"]
    # ansible/provision.yml: <env>-<group with "_" written "-">-<n>
    provision = (ROOT / "ansible" / "provision.yml").read_text()
    assert "kit_environment ~ '-' ~ (group | replace('_', '-')) ~ '-' ~ n" in provision
    labels = {f"prod-{group.replace('_', '-')}-1" for group in groups}
    shown = set(re.findall(r"`(prod-[a-z-]+-\d+)`", README))
    assert shown, "README shows no label"
    assert shown <= labels, sorted(shown - labels)
