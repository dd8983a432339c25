"""Celery tasks of predictions: take ids, call a service, return."""

from __future__ import annotations

from celery import shared_task

from project.queue import enqueue


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
    """Suggest tags for the next batch of untagged images; re-queue itself while more remain.

    Each batch records its progress on the project's SuggestionRun (what the gallery polls);
    the batch that does not re-queue marks the run finished.
    """
    from predictions.services.suggestions import record_suggestion_batch, suggest_for_untagged

    stored, remaining = suggest_for_untagged(project_id)
    record_suggestion_batch(project_id, stored=stored, remaining=remaining)
    if remaining and stored:
        enqueue("predictions.suggest_tags", project_id, queue="predict")
    return stored
