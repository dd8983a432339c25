"""Queueing never holds or fails a response when Redis is down; the sweeps catch up promptly.

Before: queueing thumbnails after an upload retried ~20 times (about 20 s) against a dead
Redis, past the server's shutdown grace, and the client lost the response of 950 committed
images; the sweep made their thumbnails only 10 minutes later.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from labeling.models import Image
from labeling.services.thumbnails import queue_missing_thumbnails
from project.queue import BrokerUnavailable, enqueue, queued_count, send
from tests.conftest import make_image
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_sends_only_after_the_commit(private_broker):
    with transaction.atomic():
        enqueue("labeling.make_thumbnails", [1], queue="thumbnails")
        assert queued_count("thumbnails") == 0  # nothing before the commit
    assert queued_count("thumbnails") == 1


def test_enqueue_rolled_back_sends_nothing(private_broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("labeling.make_thumbnails", [1], queue="thumbnails")
        raise RuntimeError("rolled back")
    assert queued_count("thumbnails") == 0


def test_broker_outage_is_reported_to_on_error_fast_and_never_raised(broker_down):
    errors: list[Exception] = []
    started = time.monotonic()
    with transaction.atomic():
        enqueue("labeling.make_thumbnails", [1], queue="thumbnails", on_error=errors.append)
    assert time.monotonic() - started < 3
    assert len(errors) == 1 and isinstance(errors[0], BrokerUnavailable)
    # Within the backoff, later sends give up at once instead of waiting again.
    started = time.monotonic()
    assert send("labeling.make_thumbnails", [2], queue="thumbnails") is False
    assert time.monotonic() - started < 0.05


def test_upload_of_many_images_answers_at_once_when_redis_is_down(broker_down, client):
    from tests.factories import MembershipFactory

    member = MembershipFactory()
    client.force_login(member.user)
    files = [
        SimpleUploadedFile(f"{i}.png", make_image(8, 8, (i, i, 255 - i))) for i in range(120)
    ]  # three thumbnail batches
    started = time.monotonic()
    response = client.post(f"/api/projects/{member.project_id}/images/upload/", {"files": files})
    elapsed_s = time.monotonic() - started
    assert response.status_code == 201
    assert response.json()["accepted_count"] == 120
    assert elapsed_s < 5, f"the upload waited {elapsed_s:.1f} s on the dead broker"
    assert Image.objects.filter(project_id=member.project_id, thumbnail="").count() == 120


def test_sweep_queues_missing_thumbnails_a_minute_after_upload(private_broker):
    image = ImageFactory()
    assert queue_missing_thumbnails() == 0  # just uploaded: its task may be in flight
    Image.objects.filter(pk=image.pk).update(created=timezone.now() - timedelta(minutes=2))
    assert queue_missing_thumbnails() == 1
    assert queued_count("thumbnails") == 1


def test_sweep_waits_while_the_thumbnail_queue_has_a_backlog(private_broker):
    image = ImageFactory()
    Image.objects.filter(pk=image.pk).update(created=timezone.now() - timedelta(minutes=2))
    send("labeling.make_thumbnails", [image.pk], queue="thumbnails")
    assert queue_missing_thumbnails() == 0
    assert queued_count("thumbnails") == 1  # not sent twice


def test_sweep_does_nothing_and_raises_nothing_while_redis_is_down(broker_down):
    image = ImageFactory()
    Image.objects.filter(pk=image.pk).update(created=timezone.now() - timedelta(minutes=2))
    assert queue_missing_thumbnails() == 0


def test_thumbnail_sweep_runs_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["labeling-queue-missing-thumbnails"]
    assert entry["task"] == "labeling.queue_missing_thumbnails"
    assert entry["schedule"] <= 60


def test_services_enqueue_by_name_without_importing_task_modules():
    """The task modules import the services; a service importing them back made a circle."""
    import ast
    from pathlib import Path

    services = Path(__file__).resolve().parents[2] / "labeling" / "services"
    modules = sorted(services.rglob("*.py"))  # the datasets and customvision_import packages too
    assert {"import_jobs.py", "export_jobs.py", "exports.py", "jobs.py"} <= {
        m.name for m in modules
    }
    for path in modules:
        name = str(path.relative_to(services))
        tree = ast.parse(path.read_text())
        imported = {
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert not {m for m in imported if m and m.startswith("labeling.tasks")}, name
