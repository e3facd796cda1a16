from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from kit_app import create_app


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setenv("KIT_INSTANCE", "8002")
    return create_app().test_client()


def test_healthz_answers_ok_without_dependencies(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok\n"


def test_whoami_names_the_instance_and_echoes_the_request_id(client: FlaskClient) -> None:
    response = client.get("/whoami", headers={"X-Request-ID": "rid-1"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["instance"] == "8002"
    assert body["request_id"] == "rid-1"
    assert isinstance(body["pid"], int)
