"""RQ jobs, run by `django-admin rqworker --with-scheduler high default low`."""

from __future__ import annotations

import socket

from guestbook.models import Entry


def count_words(entry_id: int) -> int:
    """Count the words of an entry; record the count and the worker host that made it."""
    # Read on the primary: the entry may be seconds old, and a replica may not have it yet.
    entry = Entry.objects.using("default").get(pk=entry_id)
    entry.word_count = len(entry.text.split())
    entry.counted_by = socket.gethostname()
    entry.save(update_fields=["word_count", "counted_by"])
    return entry.word_count
