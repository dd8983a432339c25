"""Start, run, follow and sweep Custom Vision import jobs (see the package docstring)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage

from labeling.access import require_project_creator
from labeling.services.customvision_import.copying import Source, Transport, copy_project
from labeling.services.customvision_import.status import (
    DONE,
    FAILED,
    QUEUED,
    ROOT,
    RUNNING,
    CvImportJob,
    fail_if_queued,
    heartbeat,
    read_job,
    write_job,
)
from labeling.services.job_status import lease_deadline
from project.errors import LoupeError, NotFound, ValidationFailed
from project.queue import enqueue

logger = logging.getLogger(__name__)

TASK = "labeling.import_customvision"
QUEUE = "celery"
_RESUME = "Start the import again: it continues where it stopped."


def job_id_for(endpoint: str, source_project_id: str) -> str:
    key = f"{_normalized_endpoint(endpoint)}|{source_project_id.strip().lower()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _normalized_endpoint(endpoint: str) -> str:
    return endpoint.strip().rstrip("/").lower()


def _check_request(endpoint: str, training_key: str, source_project_id: str) -> None:
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValidationFailed(
            "The endpoint must be an http(s) address, such as "
            "https://westeurope.api.cognitive.microsoft.com."
        )
    if not training_key.strip():
        raise ValidationFailed("Give the project's training key.")
    if not source_project_id.strip() or len(source_project_id) > 100:
        raise ValidationFailed("Give the Custom Vision project id (a GUID).")


def open_customvision_import(
    *, endpoint: str, training_key: str, source_project_id: str, by: AbstractBaseUser
) -> CvImportJob:
    """The job of this endpoint and project, made if new, set back to queued unless a run
    holds it (the command runs it in the foreground, `start_customvision_import` queues it)."""
    require_project_creator(by)
    _check_request(endpoint, training_key, source_project_id)
    job_id = job_id_for(endpoint, source_project_id)
    job = read_job(job_id)
    if job is not None and job.user_id not in {None, by.pk} and not by.is_superuser:
        raise ValidationFailed("Another user is importing this project; ask them to finish it.")
    if job is not None and job.state == RUNNING and job.lease_expires > time.time():
        return job
    if job is None:
        job = CvImportJob(
            job_id=job_id,
            endpoint=endpoint.strip().rstrip("/"),
            source_project_id=source_project_id.strip(),
            created=time.time(),
        )
    job.user_id = job.user_id or by.pk
    job.state, job.message, job.lease_expires = QUEUED, "Waiting for a worker.", 0.0
    write_job(job)
    return job


def start_customvision_import(
    *, endpoint: str, training_key: str, source_project_id: str, by: AbstractBaseUser
) -> CvImportJob:
    """Queue the import (or its continuation, if this endpoint and project were started
    before); returns the job. A job running under a live lease is returned as it is."""
    job = open_customvision_import(
        endpoint=endpoint, training_key=training_key, source_project_id=source_project_id, by=by
    )
    if job.state == QUEUED:
        enqueue(
            TASK,
            job.job_id,
            training_key.strip(),
            queue=QUEUE,
            on_error=lambda err: fail_if_queued(
                job.job_id,
                "The task queue (Redis) could not be reached, so no worker got this import. "
                "Check that Redis and the worker run, then start it again.",
            ),
        )
    return job


def get_customvision_import(*, job_id: str, user: AbstractBaseUser) -> CvImportJob:
    """The job, if `user` started it (or is a superuser); NotFound otherwise."""
    job = read_job(job_id) if job_id.isalnum() else None
    if job is None or (job.user_id != user.pk and not getattr(user, "is_superuser", False)):
        raise NotFound("This Custom Vision import does not exist.")
    return job


def recent_customvision_imports(*, user: AbstractBaseUser, limit: int = 10) -> list[CvImportJob]:
    try:
        job_dirs, _ = default_storage.listdir(ROOT)
    except (FileNotFoundError, NotADirectoryError):
        return []
    jobs = [job for job_id in job_dirs if (job := read_job(job_id)) is not None]
    mine = [job for job in jobs if job.user_id == user.pk or user.is_superuser]
    return sorted(mine, key=lambda job: job.created, reverse=True)[:limit]


def run_customvision_import(
    *,
    job_id: str,
    training_key: str,
    transport: Transport | None = None,
    on_progress: Callable[[CvImportJob], None] = lambda job: None,
) -> CvImportJob:
    """Copy the project (or the rest of it) and record the outcome; always ends the job unless
    another run holds its lease. `transport`: httpx's, for a test's failing network."""
    job = read_job(job_id)
    if job is None:
        raise NotFound("This Custom Vision import does not exist.")
    if job.state == DONE:
        return job
    if job.state == RUNNING and job.lease_expires > time.time():
        logger.info("Custom Vision import %s is held by another run", job_id)
        return job
    job.runs += 1
    job.state, job.message = RUNNING, "Reading the Custom Vision project."
    job.lease_expires = lease_deadline()
    write_job(job)
    with heartbeat(job):
        try:
            user = get_user_model().objects.get(pk=job.user_id)
            with Source(job.endpoint, training_key, transport) as source:
                copy_project(job, source, user, on_progress)
        except LoupeError as err:
            job.state, job.message = FAILED, f"{err.message} {_RESUME}"
        except get_user_model().DoesNotExist:
            job.state, job.message = FAILED, "The account that started this import is gone."
        except SoftTimeLimitExceeded:
            job.state, job.message = FAILED, f"The import ran past its time limit. {_RESUME}"
        except Exception:
            logger.exception("Custom Vision import %s failed unexpectedly", job_id)
            job.state = FAILED
            job.message = f"The import stopped on an unexpected error (logged). {_RESUME}"
        else:
            job.state, job.progress = DONE, 1.0
            job.message = f"Copied {len(job.copied)} of {job.total} images" + (
                f"; {len(job.refused)} refused (listed below)." if job.refused else "."
            )
    job.lease_expires, job.finished = 0.0, time.time()
    write_job(job)
    return job


def sweep_customvision_imports(*, now: float | None = None) -> int:
    """Fail jobs whose run vanished (lease out) or that no worker took; returns how many."""
    now = time.time() if now is None else now
    changed = 0
    try:
        job_dirs, _ = default_storage.listdir(ROOT)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for job_id in job_dirs:
        job = read_job(job_id)
        if job is None or job.is_finished:
            continue
        lost = job.state == RUNNING and job.lease_expires < now
        unclaimed = job.state == QUEUED and now - job.created > settings.LOUPE_IMPORT_QUEUED_MAX_S
        if lost or unclaimed:
            job.state, job.finished, job.lease_expires = FAILED, now, 0.0
            job.message = (
                "The worker copying this project stopped without a word. "
                if lost
                else "No worker took this import in time. "
            ) + _RESUME
            write_job(job)
            changed += 1
    return changed
