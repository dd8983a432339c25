"""Serving-file task (training.services.serving): takes an id, writes the file, ends."""

from __future__ import annotations

from celery import shared_task

from training.services import serving


@shared_task(
    name=serving.TASK,
    queue="predict",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=serving.TIME_LIMIT_S,
    ignore_result=True,
)
def build_serving_model(iteration_id: int) -> str:
    return serving.build_serving_model(iteration_id)
