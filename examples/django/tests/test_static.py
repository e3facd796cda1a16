from __future__ import annotations

from django.conf import settings
from django.test import Client


def test_whitenoise_serves_admin_static_files_with_debug_off(client: Client) -> None:
    assert settings.DEBUG is False
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_an_unknown_static_file_is_404(client: Client) -> None:
    assert client.get("/static/admin/css/nope.css").status_code == 404
