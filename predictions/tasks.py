"""Celery tasks of predictions: take ids, call a service, return."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="predictions.suggest_tags",
    queue="predict",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=900,
    soft_time_limit=840,
    ignore_result=True,
)
def suggest_tags(project_id: int) -> int:
    """Suggest tags for the next batch of untagged images; re-queue itself while more remain."""
    from predictions.services.suggestions import suggest_for_untagged

    stored, remaining = suggest_for_untagged(project_id)
    if remaining and stored:
        suggest_tags.delay(project_id)
    return stored
