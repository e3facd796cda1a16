"""HAProxy's backend servers: one naming rule for the configuration, the published endpoint
and the drain/ready entry point, and the runtime API's `show stat` read back."""

from __future__ import annotations

from conftest import load_plugin

servers = load_plugin("roles/haproxy/filter_plugins/haproxy_servers.py")

HOSTVARS = {
    "app-1": {"private_ip": "10.0.0.21", "app_gunicorn_listeners": [
        {"port": 8001, "capacity": 12}, {"port": 8002, "capacity": 12}]},
    "app-2": {"private_ip": "10.0.0.22", "app_gunicorn_listeners": [{"port": 8001, "capacity": 5}]},
    "lb-1": {"haproxy_endpoint": {"servers": {"app-1": ["app-1-8001", "app-1-8002"]}}},
    "lb-2": {"haproxy_endpoint": {"servers": {"app-1": ["app-1-8001", "app-1-8002"]}}},
    "db-1": {},
}  # fmt: skip

# `show stat` as the runtime API prints it (columns trimmed to those read).
SHOW_STAT = """# pxname,svname,qcur,qmax,scur,smax,stot,eresp,status,hrsp_5xx
public,FRONTEND,,,3,9,40,,OPEN,1
app,app-1-8001,2,5,4,12,17,1,UP,3
app,app-1-8002,0,0,0,3,21,0,DRAIN,0
app,app-2-8001,0,0,1,5,2,0,DOWN,0
app,BACKEND,0,0,5,20,40,1,UP,3
"""


def test_each_instance_gets_its_share_of_the_capacity_less_one_slot_per_lb() -> None:
    got = servers.haproxy_servers(["app-1", "app-2"], HOSTVARS, 2)

    assert [(s["name"], s["address"], s["port"], s["maxconn"]) for s in got] == [
        ("app-1-8001", "10.0.0.21", 8001, 5),
        ("app-1-8002", "10.0.0.21", 8002, 5),
        ("app-2-8001", "10.0.0.22", 8001, 1),
    ]
    assert servers.haproxy_names_by_host(got) == {
        "app-1": ["app-1-8001", "app-1-8002"],
        "app-2": ["app-2-8001"],
    }


def test_a_host_that_published_no_listener_has_no_server() -> None:
    assert servers.haproxy_servers(["db-1"], HOSTVARS, 1) == []


def test_every_lb_that_published_its_endpoint_is_told_about_every_server_of_the_host() -> None:
    pairs = servers.haproxy_lb_servers(["app-1", "lb-1", "lb-2", "db-1"], HOSTVARS, "app-1")

    assert pairs == [
        ["lb-1", "app-1-8001"],
        ["lb-1", "app-1-8002"],
        ["lb-2", "app-1-8001"],
        ["lb-2", "app-1-8002"],
    ]
    assert servers.haproxy_lb_servers(["lb-1"], HOSTVARS, "app-9") == []


def test_show_stat_gives_status_requests_in_flight_or_queued_served_and_errors() -> None:
    rows = servers.haproxy_stat(SHOW_STAT, "app", ["app-1-8001", "app-1-8002", "app-9-8001"])

    assert rows == [
        {"name": "app-1-8001", "status": "UP", "inflight": 6, "served": 17, "errors": 4},
        {"name": "app-1-8002", "status": "DRAIN", "inflight": 0, "served": 21, "errors": 0},
        {"name": "app-9-8001", "status": "MISSING", "inflight": 0, "served": 0, "errors": 0},
    ]
    assert servers.haproxy_stat(SHOW_STAT, "other", ["app-1-8001"])[0]["status"] == "MISSING"
