"""The one-per-project background jobs of training (the dataset health check, the embedding map):
a row with a status that a request queues, a worker claims, and a lost enqueue fails with a
reason. Each job keeps its own rules (what it computes, when it is stale); this is the part that
is the same.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models, transaction
from django.utils import timezone

from labeling.models import Project
from project.queue import enqueue

Row = TypeVar("Row", bound=models.Model)


def request_run(
    model: type[Row],
    project: Project,
    *,
    task: str,
    lost_message: str,
    defaults: dict[str, Any] | None = None,
) -> Row:
    """Queue `task` unless the project's row is queued or running already; returns the row.

    `lost_message` is the row's failure when the task cannot be queued (the queue is down)."""
    status: Any = model.Status
    with transaction.atomic():
        row, _ = model.objects.select_for_update().get_or_create(project=project, defaults=defaults)
        if row.status in (status.QUEUED, status.RUNNING):
            return row  # type: ignore[no-any-return]
        row.status = status.QUEUED
        row.requested = timezone.now()
        row.save(update_fields=["status", "requested"])
        enqueue(
            task,
            project.pk,
            queue="train",
            on_error=lambda err: _fail_lost(model, row.pk, lost_message),
        )
    return row  # type: ignore[no-any-return]


def _fail_lost(model: type[models.Model], row_id: int, message: str) -> None:
    model.objects.filter(pk=row_id).update(
        status=model.Status.FAILED,
        failure_message=message,
        finished=timezone.now(),
    )


def claim_run(model: type[Row], project_id: int) -> Row | None:
    """The worker's claim: the project's row marked running, or None when there is none or
    another worker runs it already."""
    with transaction.atomic():
        row = model.objects.select_for_update().filter(project_id=project_id).first()
        if row is None or row.status == model.Status.RUNNING:
            return None
        row.status = model.Status.RUNNING
        row.started = timezone.now()
        row.save(update_fields=["status", "started"])
    return row  # type: ignore[no-any-return]
