"""PostgreSQL through the node's PgBouncer: one pool per DSN and per worker process.

The writer DSN reaches the primary, the reader DSN the replicas. Pools open lazily in
the worker that first uses them (never in the preloading master: a connection must not
cross a fork), and PgBouncer multiplexes every worker's few connections onto the server.
"""

from __future__ import annotations

import atexit
import os
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

_pools: dict[tuple[int, str], ConnectionPool] = {}


def _closed_by_peer(conn: psycopg.Connection[Any]) -> bool:
    """Whether the other end closed this idle connection.

    PgBouncer closes its clients when it restarts (a restore, a changed setting) and when a
    server login fails during a failover; the pool would hand such a connection out once,
    and the request using it would fail. An idle connection has nothing to read unless the
    other end closed it (or sent an error before closing): readable means gone. No round
    trip, unlike a query."""
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


def pool(dsn: str) -> ConnectionPool:
    key = (os.getpid(), dsn)
    if key not in _pools:
        # PgBouncer in transaction mode: no server-side prepared statements.
        _pools[key] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=4,
            kwargs={"prepare_threshold": None, "autocommit": True},
            open=True,
            timeout=5,
        )
    return _pools[key]


@contextmanager
def connection(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of this process's pool for `dsn`, never one its peer closed while idle:
    such a one is closed and discarded (the pool opens another) and the next one taken, at
    once (the pool's own check waits a second between tries)."""
    connections = pool(dsn)
    conn = connections.getconn()
    for _ in range(connections.max_size):
        if not _closed_by_peer(conn):
            break
        conn.close()
        connections.putconn(conn)
        conn = connections.getconn()
    try:
        yield conn
    finally:
        connections.putconn(conn)


@atexit.register
def close_pools() -> None:
    """Close this process's pools, so that its exit does not wait on their threads.

    An open pool left to the interpreter's teardown stops its threads one at a time, 5 s
    each: about 20 s per pool, long enough for a gunicorn worker told to stop to outlive
    graceful_timeout and be killed. Pools a forked worker inherited belong to its parent and
    are left alone."""
    for key in [key for key in _pools if key[0] == os.getpid()]:
        _pools.pop(key).close()


def check(dsn: str) -> str:
    try:
        with connection(dsn) as conn:
            conn.execute("SELECT 1")
        return "ok"
    except Exception as error:  # any failure means not ready
        return f"error: {error}"


def migrate(dsn: str) -> bool:
    """Create what SCHEMA describes; True when something was created.

    One connection, closed on return: a one-shot command keeps no pool, whose threads an
    exiting interpreter would wait for (5 s each on Python 3.13)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        before = conn.execute("SELECT to_regclass('public.items') IS NOT NULL").fetchone()
        conn.execute(SCHEMA)
    return not (before and before[0])


def insert_item(dsn: str, name: str) -> dict[str, Any]:
    with connection(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO items (name) VALUES (%s) RETURNING id, name, created_at::text", (name,)
        )
        row = cur.fetchone()
    assert row is not None
    return row


# A read is retried after these pauses when the connection fails: a replica stopping or
# leaving the read pool ends its sessions, and PgBouncer refuses a pool's new clients for
# server_login_retry (1 s) after a failed server login, until the node's router sends the
# pool's new connections elsewhere. A read has no effect to repeat; a write is not retried.
READ_RETRY_PAUSES = (0.5, 1.0)


def list_items(dsn: str, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    for pause in READ_RETRY_PAUSES:
        try:
            return _list_items_once(dsn, name, limit)
        except psycopg.OperationalError:
            time.sleep(pause)
    return _list_items_once(dsn, name, limit)


def _list_items_once(dsn: str, name: str | None, limit: int) -> list[dict[str, Any]]:
    with connection(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        if name is None:
            cur.execute(
                "SELECT id, name, created_at::text FROM items ORDER BY id DESC LIMIT %s", (limit,)
            )
        else:
            cur.execute(
                "SELECT id, name, created_at::text FROM items WHERE name = %s ORDER BY id DESC"
                " LIMIT %s",
                (name, limit),
            )
        return cur.fetchall()
