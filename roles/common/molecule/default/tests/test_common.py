"""The common role converged alone in one container."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SSH = "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5"


def test_extra_packages_are_added_to_the_base_ones(host) -> None:
    assert host.package("jq").is_installed
    assert host.package("curl").is_installed


def test_kernel_settings_file_merges_the_extra_settings(host) -> None:
    content = host.file("/etc/sysctl.d/60-kit.conf").content_string
    assert "net.core.somaxconn = 65535" in content
    assert "net.ipv4.tcp_keepalive_time = 300" in content
    assert content.startswith("#")


def test_setting_made_at_container_creation_is_in_force(host) -> None:
    assert host.run("sysctl -n net.core.somaxconn").stdout.strip() == "65535"


def test_default_open_file_limit_is_capped_to_the_container_ceiling(host) -> None:
    ceiling = int(host.run("awk '/^Max open files/ {print $5}' /proc/1/limits").stdout)
    default = host.run("systemctl show --value -p DefaultLimitNOFILE").stdout.strip()
    assert int(default) == min(ceiling, 1048576)
    service = host.run("systemd-run --quiet --wait --pipe sh -c 'ulimit -n'")
    assert service.rc == 0, service.stderr
    assert int(service.stdout) == int(default)


def test_locale_and_time_zone(host) -> None:
    assert host.file("/etc/default/locale").contains("^LANG=en_US.UTF-8$")
    assert "en_US.utf8" in host.run("locale -a").stdout.split()
    assert host.file("/etc/localtime").linked_to.endswith("/Etc/UTC")


def test_time_sync_is_left_to_the_container_host(host) -> None:
    assert not host.package("systemd-timesyncd").is_installed


def test_journald_limits_are_in_force(host) -> None:
    config = host.run("systemd-analyze cat-config systemd/journald.conf").stdout
    assert "RateLimitBurst=20000" in config
    assert "SystemMaxUse=1G" in config
    assert host.service("systemd-journald").is_running


def test_no_unit_failed(host) -> None:
    assert host.run("systemctl --failed --no-legend --plain").stdout.strip() == ""


def test_ssh_takes_keys_only_and_no_root_once_deploy_can_log_in(host) -> None:
    effective = host.check_output("sshd -T")
    settings = dict(line.split(" ", 1) for line in effective.splitlines() if " " in line)
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitemptypasswords"] == "no"
    assert settings["permitrootlogin"] == "no"
    assert host.service("ssh").is_running


def test_the_deploy_user_logs_in_with_its_key_and_becomes_root_and_root_may_not(host) -> None:
    keys = host.file("/home/deploy/.ssh/authorized_keys").content_string.splitlines()
    assert len(keys) == 1
    assert keys[0].endswith("deploy@molecule")
    deploy = host.run(f"{SSH} -i /root/deploy-key deploy@127.0.0.1 sudo -n id -u")
    assert deploy.rc == 0, deploy.stderr
    assert deploy.stdout.strip() == "0"
    # Root has a valid key of its own, and is refused all the same.
    root = host.run(f"{SSH} -i /root/root-key root@127.0.0.1 true")
    assert root.rc != 0
    assert "Permission denied" in root.stderr
    assert host.file("/etc/sudoers.d/kit-deploy").mode == 0o440


def test_a_drop_in_that_sets_root_login_first_stops_the_role(host) -> None:
    """sshd takes the first value it reads: a drop-in sorting before the kit's would win,
    which `sshd -T` shows and the role refuses, naming the setting."""
    host.run("printf 'PermitRootLogin yes\\n' > /etc/ssh/sshd_config.d/00-aaa.conf")
    try:
        assert "permitrootlogin yes" in host.check_output("sshd -T")
        scenario = Path(__file__).resolve().parents[1]
        result = subprocess.run(
            ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
             str(scenario / "override.yml")],
            capture_output=True, text=True, check=False, timeout=300,
            env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"),
        )  # fmt: skip
        output = " ".join((result.stdout + result.stderr).split())
        assert result.returncode != 0, output[-2000:]
        assert "sshd runs with 'permitrootlogin yes'" in output, output[-2000:]
        assert "another file sets it first" in output
    finally:
        host.run("rm -f /etc/ssh/sshd_config.d/00-aaa.conf")
    assert "permitrootlogin no" in host.check_output("sshd -T")


def test_security_updates_run_daily_and_reboots_are_left_to_the_operator(host) -> None:
    assert host.package("unattended-upgrades").is_installed
    config = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in config
    assert host.service("apt-daily-upgrade.timer").is_enabled
