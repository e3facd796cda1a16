"""Kernel settings compared with those in force, as the common role's sysctl entry point does."""

from __future__ import annotations

from conftest import load_plugin

common_sysctl = load_plugin("roles/common/filter_plugins/common_sysctl.py")


def test_settings_in_force_are_not_reported() -> None:
    in_force = ["net.core.somaxconn = 65535", "net.ipv4.tcp_rmem = 4096\t87380\t16777216"]
    wanted = {"net.core.somaxconn": 65535, "net.ipv4.tcp_rmem": "4096 87380 16777216"}

    assert common_sysctl.common_sysctl_differences(in_force, wanted) == []


def test_each_difference_and_each_missing_setting_is_named() -> None:
    in_force = ["vm.overcommit_memory = 0"]
    wanted = {"vm.overcommit_memory": 1, "net.core.no_such_setting": 5}

    assert common_sysctl.common_sysctl_differences(in_force, wanted) == [
        "net.core.no_such_setting is absent, wanted 5",
        "vm.overcommit_memory is 0, wanted 1",
    ]
