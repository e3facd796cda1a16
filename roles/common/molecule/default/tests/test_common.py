"""The common role converged alone in one container."""

from __future__ import annotations


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
