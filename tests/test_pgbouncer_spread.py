"""The read-only spread: one definition for the pgbouncer role and the pre-flight budget."""

from __future__ import annotations

from conftest import load_plugin

spread = load_plugin("roles/pgbouncer/filter_plugins/pgbouncer_spread.py")

FLEET = ["app-1", "app-2", "app-3", "workers-1"]


def test_nodes_take_the_replicas_in_turn_by_their_position_in_the_fleet() -> None:
    targets = [spread.pgbouncer_readonly_target(n, FLEET, ["db-2", "db-3"], "db-1") for n in FLEET]
    assert targets == ["db-2", "db-3", "db-2", "db-3"]


def test_a_pinned_node_reads_from_its_pin_and_without_replicas_from_the_primary() -> None:
    assert spread.pgbouncer_readonly_target("app-2", FLEET, ["db-2"], "db-1", "db-1") == "db-1"
    assert spread.pgbouncer_readonly_target("app-2", FLEET, [], "db-1") == "db-1"


def test_server_load_counts_each_pool_on_the_host_it_reaches() -> None:
    hostvars = {
        "app-1": {},
        "app-2": {"pgbouncer_max_db_connections": "30"},
        "app-3": {"pgbouncer_readonly_host": "db-1"},
        "workers-1": {},
    }
    load = spread.pgbouncer_server_load(FLEET, hostvars, 20, "db-1", ["db-2", "db-3"])

    assert load["db-1"] == {"total": 110, "from": ["app-1", "app-2", "app-3", "app-3", "workers-1"]}
    assert load["db-2"] == {"total": 20, "from": ["app-1"]}
    assert load["db-3"] == {"total": 30 + 20, "from": ["app-2", "workers-1"]}


def test_without_replicas_every_node_counts_twice_on_the_primary() -> None:
    load = spread.pgbouncer_server_load(["a", "b"], {"a": {}, "b": {}}, 10, "db-1", [])
    assert load == {"db-1": {"total": 40, "from": ["a", "a", "b", "b"]}}


def test_no_primary_gives_an_empty_load_rather_than_an_error() -> None:
    assert spread.pgbouncer_server_load(["a"], {"a": {}}, 10, "", []) == {}
