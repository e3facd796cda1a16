"""The route's template for the kit's request metrics.

The kit's gunicorn hooks label every request with ``environ["kit.route"]`` (the app role's
README, "Request metrics"): the route as written in urls.py, never the raw path, so each
entry's URL does not become a series of its own. Django's request.META is that environ.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

ROUTE_KEY = "kit.route"


class RouteForMetrics:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = request.resolver_match
        request.META[ROUTE_KEY] = f"/{match.route}" if match is not None else "<unmatched>"
        return response
