"""Celery tasks of the dataset export: the queue's API over labeling.services.export_jobs.

Registered through `app.autodiscover_tasks(related_name="tasks_export")` in project/celery.py.
Idempotent: `run_export` does nothing for a job that already finished or that another worker
holds, and a rerun after a lost worker writes the archive again from the database.
"""

from __future__ import annotations

from celery import shared_task

from labeling.services.export_jobs import run_export, sweep_exports

# 20,000 images export in minutes; the limit only stops a stuck one. The soft limit comes
# first, so the job ends as failed with a reason instead of a killed worker.
EXPORT_TIME_LIMIT_S = 2 * 3600
EXPORT_SOFT_TIME_LIMIT_S = EXPORT_TIME_LIMIT_S - 60


@shared_task(
    name="labeling.export_dataset",
    queue="celery",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=EXPORT_TIME_LIMIT_S,
    soft_time_limit=EXPORT_SOFT_TIME_LIMIT_S,
    ignore_result=True,
)
def export_dataset_task(project_id: int, job_id: str) -> str:
    return run_export(project_id=project_id, job_id=job_id).state


@shared_task(name="labeling.sweep_exports", time_limit=120, ignore_result=True)
def sweep_exports_task() -> int:
    return sweep_exports()
