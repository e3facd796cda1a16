"""The kit's example stateless WSGI application."""

from kit_app.web import create_app

__all__ = ["create_app"]
