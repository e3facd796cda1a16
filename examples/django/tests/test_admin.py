from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from tests import db


@db
def test_the_admin_login_page_renders(client: Client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content


@db
def test_createsuperuser_then_log_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a deployer runs: `django-admin createsuperuser --noinput` with DJANGO_SUPERUSER_*.
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long test password")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "admin@example.com")
    call_command("createsuperuser", interactive=False, verbosity=0)
    assert User.objects.using("default").get(username="admin").is_superuser

    # The admin keeps its CSRF protection: log in as a browser does, token and all.
    client = Client(enforce_csrf_checks=True)
    login_page = client.get("/admin/login/")
    token = login_page.cookies["csrftoken"].value
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "admin", "password": "a long test password", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"

    assert client.get("/admin/guestbook/entry/").status_code == 200
    assert client.get("/whoami").json()["user"] == "admin"


@db
def test_the_admin_refuses_a_post_without_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
