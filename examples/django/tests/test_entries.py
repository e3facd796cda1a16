from __future__ import annotations

import socket

import django_rq
import pytest
import redis
from django.apps import apps
from django.db import router
from django.db.migrations.state import ProjectState
from django.test import Client
from rq import SimpleWorker
from rq.job import Job

from guestbook.models import Entry
from tests import db


@db
def test_write_then_read_an_entry(client: Client) -> None:
    created = client.post("/entries/", {"text": "hello from the kit"})
    assert created.status_code == 201
    entry_id = created.json()["id"]

    entry = Entry.objects.using("default").get(pk=entry_id)
    assert entry.node == "test-node"

    response = client.get(f"/entries/{entry_id}/")
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == "hello from the kit"
    assert body["node"] == "test-node"
    assert body["word_count"] is None
    assert body["read_alias"] == "replica"
    assert body["read_in_recovery"] is None  # not PostgreSQL


@db
def test_an_entry_from_a_json_body(client: Client) -> None:
    created = client.post("/entries/", {"text": "json too"}, content_type="application/json")
    assert created.status_code == 201
    assert Entry.objects.get(pk=created.json()["id"]).text == "json too"


@db
@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ({}, "application/x-www-form-urlencoded"),
        ({"text": "   "}, "application/json"),
        ({"text": 3}, "application/json"),
        ("not json", "application/json"),
    ],
)
def test_an_entry_needs_text(client: Client, data: object, content_type: str) -> None:
    if content_type != "application/json":
        response = client.post("/entries/", data)
    else:
        response = client.post("/entries/", data, content_type=content_type)
    assert response.status_code == 400
    assert not Entry.objects.using("default").exists()


@db
def test_a_missing_entry_is_a_json_404(client: Client) -> None:
    response = client.get("/entries/12345/")
    assert response.status_code == 404
    assert response.json() == {"error": "not found", "read_alias": "replica"}


def test_the_router_reads_on_the_replica_and_writes_and_migrates_on_default() -> None:
    assert router.db_for_read(Entry) == "replica"
    assert router.db_for_write(Entry) == "default"
    assert router.allow_migrate("default", "guestbook", model_name="entry")
    assert not router.allow_migrate("replica", "guestbook", model_name="entry")
    assert router.allow_relation(Entry(), Entry())


def test_the_router_reads_on_default_in_data_migrations() -> None:
    # What a RunPython migration gets from apps.get_model(): a historical model.
    historical = ProjectState.from_apps(apps).apps.get_model("guestbook", "Entry")
    assert router.db_for_read(historical) == "default"


@db
def test_counting_words_runs_as_an_rq_job(client: Client, rq_redis: redis.Redis) -> None:
    entry = Entry.objects.create(text="one two  three\nfour")

    response = client.post(f"/entries/{entry.pk}/count/")
    assert response.status_code == 202
    job = Job.fetch(response.json()["job"], connection=rq_redis)
    assert job.origin == "default"
    assert job.func_name == "guestbook.jobs.count_words"
    assert job.args == (entry.pk,)

    # The worker the kit runs, in this process (SimpleWorker: no fork) and in burst mode.
    queue = django_rq.get_queue("default")
    assert SimpleWorker([queue], connection=rq_redis).work(burst=True)

    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == 4
    entry.refresh_from_db(using="default")
    assert entry.word_count == 4
    assert entry.counted_by == socket.gethostname()


@db
def test_counting_a_missing_entry_is_a_404(client: Client, rq_redis: redis.Redis) -> None:
    assert client.post("/entries/12345/count/").status_code == 404
    assert django_rq.get_queue("default").count == 0
