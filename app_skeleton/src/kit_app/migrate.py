"""`kit-app-migrate`: bring the database schema up to date, as the database owner.

Run once per deploy (the app role runs it on one node after the release is in place) with
KIT_DATABASE_URL naming the owner. Prints "applied" when it changed the schema and
"up to date" when there was nothing to do, so the caller can report a change truthfully.
"""

from __future__ import annotations

import os
import sys

from kit_app import db


def main() -> int:
    dsn = os.environ.get("KIT_DATABASE_URL", "")
    if not dsn:
        print("kit-app-migrate: KIT_DATABASE_URL is not set", file=sys.stderr)
        return 2
    print("applied" if db.migrate(dsn) else "up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
