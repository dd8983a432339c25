"""Celery tasks of the labeling app: the queue's API over labeling.services.

Invariant: a task takes image ids and may run twice (acks_late redelivery, a re-queued batch);
`make_thumbnails` skips images whose thumbnail exists, so a second run is a no-op. A worker that
dies mid-batch loses only that batch's missing thumbnails; the gallery shows a placeholder and
`labeling.queue_missing_thumbnails` (periodic) queues them again.
"""

from __future__ import annotations

import time

from celery import shared_task

from labeling.services import projects, thumbnails
from project.queue import enqueue

# A batch of 50 thumbnails takes well under a second; the budget leaves room for 6 MB images on
# a busy host. Past it the task re-queues what is left instead of hitting the hard limit.
THUMBNAIL_BUDGET_S = 120
THUMBNAIL_TIME_LIMIT_S = 300


@shared_task(
    name="labeling.make_thumbnails",
    queue="thumbnails",
    acks_late=True,
    # A file that crashes the decoder must not be redelivered forever: a lost worker
    # fails the task, and the image keeps its placeholder.
    reject_on_worker_lost=False,
    time_limit=THUMBNAIL_TIME_LIMIT_S,
    # Nobody waits on the result. Storing it costs a Redis write, and with a Redis result
    # backend every publish would also subscribe for it, which blocks ~20 s of reconnect
    # retries inside the upload request when Redis is down.
    ignore_result=True,
)
def make_thumbnails(image_ids: list[int]) -> dict[str, list[int]]:
    run = thumbnails.make_thumbnails(image_ids, deadline=time.monotonic() + THUMBNAIL_BUDGET_S)
    if run.remaining:
        enqueue(thumbnails.THUMBNAIL_TASK, run.remaining, queue=thumbnails.THUMBNAIL_QUEUE)
    return {"made": run.made, "failed": run.failed, "requeued": run.remaining}


@shared_task(
    name="labeling.queue_missing_thumbnails", queue="thumbnails", time_limit=60, ignore_result=True
)
def queue_missing_thumbnails() -> int:
    return thumbnails.queue_missing_thumbnails()


@shared_task(
    name="labeling.delete_stored_files",
    acks_late=True,
    time_limit=300,
    ignore_result=True,
)
def delete_stored_files(names: list[str]) -> int:
    # Idempotent: a file already gone counts as deleted, so a redelivered batch is harmless.
    return projects.delete_stored_files(names)


@shared_task(
    name="labeling.delete_stored_folders",
    acks_late=True,
    time_limit=600,
    ignore_result=True,
)
def delete_stored_folders(folders: list[str]) -> int:
    # Idempotent as delete_stored_files: a second run finds the folders empty.
    return projects.delete_stored_folders(folders)
