"""Celery tasks of the dataset import (labeling.services.import_jobs) and of the Custom Vision
project import (labeling.services.customvision_import): the queue's API over those services.

Registered through `app.autodiscover_tasks(related_name="tasks_import")` in project/celery.py.
Idempotent: `run_import` does nothing for a job that already finished or that another worker
holds, and a rerun after a lost worker starts from the stored archive (see the invariant in
labeling/services/import_jobs.py). The service enqueues by name (project/queue.py), so this
module is the only one importing the other.
"""

from __future__ import annotations

from celery import shared_task

from labeling.services.customvision_import import (
    run_customvision_import,
    sweep_customvision_imports,
)
from labeling.services.import_jobs import run_import, sweep_imports

# An import of 20k images takes minutes; the limit only stops a stuck one. The soft limit
# comes first, so the job ends as failed with a reason instead of a killed worker.
IMPORT_TIME_LIMIT_S = 2 * 3600
IMPORT_SOFT_TIME_LIMIT_S = IMPORT_TIME_LIMIT_S - 60


@shared_task(
    name="labeling.import_dataset",
    queue="celery",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=IMPORT_TIME_LIMIT_S,
    soft_time_limit=IMPORT_SOFT_TIME_LIMIT_S,
    ignore_result=True,
)
def import_dataset_task(project_id: int, job_id: str, user_id: int, format_name: str) -> str:
    return run_import(
        project_id=project_id, job_id=job_id, user_id=user_id, format_name=format_name
    ).state


@shared_task(name="labeling.sweep_imports", time_limit=120, ignore_result=True)
def sweep_imports_task() -> int:
    return sweep_imports()


@shared_task(
    name="labeling.import_customvision",
    queue="celery",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=IMPORT_TIME_LIMIT_S,
    soft_time_limit=IMPORT_SOFT_TIME_LIMIT_S,
    ignore_result=True,
)
def import_customvision_task(job_id: str, training_key: str) -> str:
    # The key is an argument, never stored: see labeling/services/customvision_import.py.
    return run_customvision_import(job_id=job_id, training_key=training_key).state


@shared_task(name="labeling.sweep_customvision_imports", time_limit=120, ignore_result=True)
def sweep_customvision_imports_task() -> int:
    return sweep_customvision_imports()
