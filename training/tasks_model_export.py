"""Celery tasks of model exports: the queue's API over training.services.model_export.

Registered through `app.autodiscover_tasks(related_name="tasks_model_export")` in
project/celery.py. Idempotent: `run_model_export` claims only a queued export, so a redelivered
message for one that is running or finished does nothing. The service enqueues by name
(project/queue.py), so this module is the only one importing the other.
"""

from __future__ import annotations

from celery import shared_task

from training.services.model_export import (
    EXPORT_QUEUE,
    SOFT_TIME_LIMIT_S,
    TIME_LIMIT_S,
    run_model_export,
    sweep_model_exports,
)


@shared_task(
    name="training.export_model",
    queue=EXPORT_QUEUE,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=TIME_LIMIT_S,
    soft_time_limit=SOFT_TIME_LIMIT_S,
    ignore_result=True,
)
def export_model_task(export_id: int) -> str | None:
    export = run_model_export(export_id)
    return export.status if export is not None else None


@shared_task(name="training.sweep_model_exports", time_limit=120, ignore_result=True)
def sweep_model_exports_task() -> int:
    return sweep_model_exports()
