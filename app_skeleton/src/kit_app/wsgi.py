"""WSGI entry point: `gunicorn kit_app.wsgi:app`."""

from kit_app import create_app

app = create_app()
