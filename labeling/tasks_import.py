"""Celery task of the dataset import: the queue's API over labeling.services.import_jobs.

Registered through `app.autodiscover_tasks(related_name="tasks_import")` in project/celery.py.
Idempotent: `run_import` does nothing for a job that already finished, and a rerun after a lost
worker starts from the stored archive (see the invariant in labeling/services/import_jobs.py).
"""

from __future__ import annotations

from celery import shared_task

from labeling.services.import_jobs import run_import

# An import of 20k images takes minutes; the limit only stops a stuck one.
IMPORT_TIME_LIMIT_S = 2 * 3600


@shared_task(
    name="labeling.import_dataset",
    queue="celery",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=IMPORT_TIME_LIMIT_S,
)
def import_dataset_task(project_id: int, job_id: str, user_id: int, format_name: str) -> str:
    return run_import(
        project_id=project_id, job_id=job_id, user_id=user_id, format_name=format_name
    ).state
