"""The Redis endpoints name the CA file where the pki role installs it."""

from __future__ import annotations

import yaml
from conftest import ROOT


def test_the_redis_endpoints_name_the_ca_the_pki_role_installs() -> None:
    pki = yaml.safe_load((ROOT / "roles/pki/vars/main.yml").read_text())
    redis = yaml.safe_load((ROOT / "roles/redis/vars/main.yml").read_text())
    ca = pki["__pki_files"]["ca"].replace("{{ __pki_dir }}", pki["__pki_dir"])
    assert redis["__redis_ca_file"] == ca
