"""Structured JSON logs, one object per line, carrying the load balancer's request id."""

from __future__ import annotations

import logging
import sys

from flask import has_request_context, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIdFilter(logging.Filter):
    """Adds request_id (from HAProxy's X-Request-ID) to records logged inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = request.headers.get(REQUEST_ID_HEADER, "")
            record.path = request.path
            record.method = request.method
            record.client = request.remote_addr
        return True


def configure_logging(level: int = logging.INFO) -> logging.Logger:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("kit_app")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger
