"""The Django project (settings, URLs, WSGI entry point) of the kit's Django example."""
