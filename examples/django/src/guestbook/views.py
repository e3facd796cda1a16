"""The guestbook's HTTP API: JSON views (no CSRF: no cookie-authenticated form posts them)
and the two health checks the kit's HAProxy and deploy playbook use."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import django_rq
from django.conf import settings
from django.core.cache import cache
from django.db import connections, router, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from guestbook.jobs import count_words
from guestbook.models import Entry

log = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches no database, cache or queue."""
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: every configured database alias and the cache answer; 503 otherwise."""
    checks: dict[str, str] = {}
    for alias in settings.DATABASES:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            checks[f"database:{alias}"] = "ok"
        except Exception as error:
            log.warning("readyz: database %s failed", alias, exc_info=True)
            checks[f"database:{alias}"] = f"error: {type(error).__name__}"
    try:
        cache.set("readyz", "ok", timeout=10)
        checks["cache"] = "ok" if cache.get("readyz") == "ok" else "error: value not read back"
    except Exception as error:
        log.warning("readyz: cache failed", exc_info=True)
        checks["cache"] = f"error: {type(error).__name__}"
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse({"checks": checks}, status=200 if ready else 503)


@require_GET
def whoami(request: HttpRequest) -> JsonResponse:
    """Which app node and gunicorn instance served the request, and for which user."""
    user = request.user.get_username() if request.user.is_authenticated else None
    return JsonResponse(
        {
            "node": os.environ.get("KIT_NODE"),
            "instance": os.environ.get("KIT_INSTANCE"),
            "user": user,
        }
    )


def _text(request: HttpRequest) -> str:
    """The "text" of a form post or of a JSON body; "" when there is none."""
    if request.content_type == "application/json":
        try:
            body: Any = json.loads(request.body)
        except ValueError:
            return ""
        text = body.get("text") if isinstance(body, dict) else None
    else:
        text = request.POST.get("text")
    return text.strip() if isinstance(text, str) else ""


@csrf_exempt
@require_POST
def create_entry(request: HttpRequest) -> JsonResponse:
    """Write an entry (the router sends writes to "default": the primary)."""
    text = _text(request)
    if not text:
        return JsonResponse({"error": 'a non-empty "text" is required'}, status=400)
    entry = Entry.objects.create(text=text, node=os.environ.get("KIT_NODE", ""))
    return JsonResponse({"id": entry.pk}, status=201)


def _in_recovery(alias: str) -> bool | None:
    """pg_is_in_recovery() on the alias's connection: True on a streaming replica."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        row = cursor.fetchone()
    return bool(row[0]) if row else None


@require_GET
def entry_detail(request: HttpRequest, entry_id: int) -> JsonResponse:
    """Read an entry through the router: from a replica when one is configured.

    A replica may lag the primary: a 404 for an entry just written may turn into a 200 a
    moment later, so a caller that has just written retries.
    """
    alias = router.db_for_read(Entry)
    # One transaction, so that PgBouncer (transaction pooling) runs both queries on the same
    # server connection, hence on the same replica.
    with transaction.atomic(using=alias):
        entry = Entry.objects.using(alias).filter(pk=entry_id).first()
        in_recovery = _in_recovery(alias)
    if entry is None:
        return JsonResponse({"error": "not found", "read_alias": alias}, status=404)
    return JsonResponse(
        {
            "id": entry.pk,
            "text": entry.text,
            "created": entry.created.isoformat(),
            "node": entry.node,
            "word_count": entry.word_count,
            "counted_by": entry.counted_by,
            "read_alias": alias,
            "read_in_recovery": in_recovery,
        }
    )


@csrf_exempt
@require_POST
def count_entry(request: HttpRequest, entry_id: int) -> JsonResponse:
    """Enqueue guestbook.jobs.count_words on the "default" queue; an RQ worker runs it."""
    # On the primary: the entry may have been written a moment ago.
    if not Entry.objects.using("default").filter(pk=entry_id).exists():
        return JsonResponse({"error": "not found"}, status=404)
    job = django_rq.get_queue("default").enqueue(count_words, entry_id)
    return JsonResponse({"job": job.id}, status=202)
