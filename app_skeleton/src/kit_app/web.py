"""Routes of the example application.

The app keeps no state in the process: whatever must outlive a request lives in Redis or
PostgreSQL, so any instance on any node can serve any request.
"""

from __future__ import annotations

import os
import socket

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)
    instance = os.environ.get("KIT_INSTANCE", "")
    hostname = socket.gethostname()

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: answers while the worker can serve; touches no dependency."""
        return Response("ok\n", mimetype="text/plain")

    @app.get("/whoami")
    def whoami() -> Response:
        """Which node, instance and worker served this request, and its request id."""
        return jsonify(
            host=hostname,
            instance=instance,
            pid=os.getpid(),
            request_id=request.headers.get("X-Request-ID", ""),
        )

    return app
