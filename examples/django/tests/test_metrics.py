from __future__ import annotations

import pytest
from django.test import Client

from tests import db


@pytest.mark.parametrize(
    ("path", "route"),
    [("/healthz", "/healthz"), ("/no/such/page", "<unmatched>")],
)
def test_each_request_names_its_route_template_for_the_kit_metrics(
    client: Client, path: str, route: str
) -> None:
    """The kit's gunicorn hooks label requests by environ["kit.route"]: Django's META."""
    response = client.get(path)
    assert response.wsgi_request.META["kit.route"] == route


@db
def test_an_included_route_is_named_whole(client: Client) -> None:
    response = client.get("/entries/999/")  # no such entry: the route still matched
    assert response.wsgi_request.META["kit.route"] == "/entries/<int:entry_id>/"
