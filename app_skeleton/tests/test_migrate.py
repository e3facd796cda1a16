"""kit-app-migrate without a database URL refuses with a message, changing nothing."""

from __future__ import annotations

import pytest

from kit_app import migrate


def test_migrate_needs_a_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KIT_DATABASE_URL", raising=False)
    assert migrate.main() == 2
    assert "KIT_DATABASE_URL is not set" in capsys.readouterr().err
