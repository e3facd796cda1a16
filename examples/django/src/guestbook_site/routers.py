"""Reads to the replicas, writes (and migrations) to the primary."""

from __future__ import annotations

from django.apps import apps as installed_apps
from django.conf import settings
from django.db.models import Model

WRITE_ALIAS = "default"
READ_ALIAS = "replica"


class PrimaryReplicaRouter:
    """Sends reads to "replica" when DATABASE_READ_URL configured it, everything else to
    "default". A replica may lag its primary: read your own fresh writes with
    `.using("default")` (as guestbook.jobs does)."""

    def db_for_read(self, model: type[Model], **hints: object) -> str:
        if model._meta.apps is not installed_apps:
            # A historical model: a data migration's apps.get_model() (django-rq's own
            # migrations have one). It reads what the migration has just written, in a
            # transaction on the primary that no replica can see yet.
            return WRITE_ALIAS
        return READ_ALIAS if READ_ALIAS in settings.DATABASES else WRITE_ALIAS

    def db_for_write(self, model: type[Model], **hints: object) -> str:
        return WRITE_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: object) -> bool:
        # Both aliases hold the same data: the replicas stream the primary.
        return True

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: object
    ) -> bool:
        # The replicas get the schema by replication; only the primary is migrated.
        return db == WRITE_ALIAS
