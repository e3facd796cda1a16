"""The worker's connection pools: closed when its process exits, and a connection closed by
its peer while idle is never handed out."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from kit_app import db


def test_close_pools_closes_this_process_pools_and_leaves_the_parents() -> None:
    mine = ConnectionPool("postgresql:///nowhere", open=False)
    parents = ConnectionPool("postgresql:///nowhere", open=False)
    db._pools[(os.getpid(), "mine")] = mine
    db._pools[(-1, "parents")] = parents
    try:
        db.close_pools()
        assert mine.closed
        assert list(db._pools) == [(-1, "parents")]
    finally:
        db._pools.clear()


class _Socket:
    """What the pool's check reads of a connection: its socket's descriptor."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


def test_an_idle_connection_whose_peer_closed_it_is_told_apart() -> None:
    ours, peers = socket.socketpair()
    try:
        assert not db._closed_by_peer(_Socket(ours))  # type: ignore[arg-type]
        peers.close()
        assert db._closed_by_peer(_Socket(ours))  # type: ignore[arg-type]
    finally:
        ours.close()


def test_a_read_is_retried_after_a_failed_connection_and_gives_up_after_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    pauses: list[float] = []
    monkeypatch.setattr("kit_app.db.time.sleep", pauses.append)

    def failing_twice(dsn: str, name: str | None, limit: int) -> list[dict[str, object]]:
        calls.append(dsn)
        if len(calls) <= 2:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return [{"id": 1}]

    monkeypatch.setattr(db, "_list_items_once", failing_twice)
    assert db.list_items("ro") == [{"id": 1}]
    assert pauses == [0.5, 1.0]

    calls.clear()
    pauses.clear()

    def failing(dsn: str, name: str | None, limit: int) -> list[dict[str, object]]:
        calls.append(dsn)
        raise psycopg.OperationalError("the database system is shutting down")

    monkeypatch.setattr(db, "_list_items_once", failing)
    with pytest.raises(psycopg.OperationalError):
        db.list_items("ro")
    assert len(calls) == 3
