"""The worker's connection pools are closed when its process exits."""

from __future__ import annotations

import os

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
