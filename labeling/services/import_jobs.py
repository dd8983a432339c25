"""Dataset import jobs: the uploaded archive and the job's status, kept in the configured storage.

Invariant: job `<job_id>` of project `<project_id>` is the folder `imports/<project_id>/<job_id>/`
of the default storage, holding `archive.zip` (removed when the job ends) and `status.json`
(written by the web when the job starts, then by the worker at most once a second and at the
end). The worker reads both through the storage, so it need not share the web's disk, and a
reload of the page reads the status, so nothing is lost with a dropped connection.

A worker that dies mid-import loses its open transaction (nothing half-imported is committed;
images stored so far are files without rows). With acks_late Celery redelivers the task, and the
rerun imports from the archive again; a job whose status is `done` or `failed` is never re-run.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from labeling.access import require_role
from labeling.models import Project, Role
from labeling.services.datasets import dataset_format, import_dataset
from project.errors import LoupeError, NotFound, ValidationFailed

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_PROGRESS_EVERY_S = 1.0
MAX_ATTEMPTS = 2


@dataclass
class ImportJob:
    project_id: int
    job_id: str
    format: str
    state: str = QUEUED
    progress: float = 0.0
    message: str = "Waiting for a worker."
    report: dict[str, Any] | None = None
    problems: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0

    @property
    def is_finished(self) -> bool:
        return self.state in {DONE, FAILED}

    @property
    def percent(self) -> int:
        return round(100 * self.progress)


def _folder(project_id: int, job_id: str) -> str:
    return f"imports/{project_id}/{job_id}"


def start_import(
    *, project: Project, upload: IO[bytes], format_name: str, by: AbstractBaseUser
) -> ImportJob:
    """Keep the uploaded zip in storage and queue the worker task; returns the queued job."""
    require_role(by, project, Role.ADMIN)
    fmt = dataset_format(project, format_name)
    if not zipfile.is_zipfile(upload):
        raise ValidationFailed(
            "The upload is not a zip archive; zip the images together with the annotation file."
        )
    upload.seek(0)
    job = ImportJob(project_id=project.pk, job_id=str(uuid.uuid4()), format=fmt.name)
    default_storage.save(f"{_folder(project.pk, job.job_id)}/archive.zip", upload)
    _write(job)
    from labeling.tasks_import import import_dataset_task

    transaction.on_commit(
        lambda: import_dataset_task.delay(project.pk, job.job_id, by.pk, fmt.name)
    )
    return job


def get_import(*, project: Project, job_id: str) -> ImportJob:
    """The job's last written status (the caller has checked access to `project`)."""
    job = _read(project.pk, job_id)
    if job is None:
        raise NotFound("This import does not exist.")
    return job


def run_import(*, project_id: int, job_id: str, user_id: int, format_name: str) -> ImportJob:
    """The worker's side: import the stored archive and record the outcome. Idempotent."""
    job = _read(project_id, job_id)
    if job is None or job.is_finished:
        return job or ImportJob(project_id, job_id, format_name, state=FAILED)
    job.attempts += 1
    if job.attempts > MAX_ATTEMPTS:
        # An archive that kills its worker must not be redelivered forever.
        return _finish(
            job,
            FAILED,
            "The import stopped its worker twice; nothing was "
            "imported. Check the archive's images or import it in parts.",
        )
    job.state, job.message = RUNNING, "Reading the archive."
    _write(job)
    last_write = time.monotonic()

    def on_progress(fraction: float, message: str) -> None:
        nonlocal last_write
        job.progress, job.message = fraction, message
        if time.monotonic() - last_write >= _PROGRESS_EVERY_S:
            _write(job)
            last_write = time.monotonic()

    archive = f"{_folder(project_id, job_id)}/archive.zip"
    try:
        project = Project.objects.get(pk=project_id)
        user = get_user_model().objects.get(pk=user_id)
        with default_storage.open(archive, "rb") as handle:
            report = import_dataset(
                project=project,
                archive=handle,
                format_name=format_name,
                by=user,
                on_progress=on_progress,
            )
    except LoupeError as err:
        job.state, job.message = FAILED, err.message
        job.problems = [{"item": "archive", "code": err.code, "message": err.message}]
    except (Project.DoesNotExist, get_user_model().DoesNotExist, FileNotFoundError):
        job.state, job.message = FAILED, "The project, its importer or the archive is gone."
    else:
        job.report = report.as_dict()
        job.problems = job.report.pop("problems")  # type: ignore[assignment]
        job.state = DONE if report.ok else FAILED
        job.message = (
            f"Imported {report.images} images."
            if report.ok
            else f"Nothing was imported: {len(report.problems)} problem"
            f"{'s' if len(report.problems) != 1 else ''} to fix."
        )
    return _finish(job, job.state, job.message)


def _finish(job: ImportJob, state: str, message: str) -> ImportJob:
    job.state, job.message, job.progress = state, message, 1.0
    _write(job)
    default_storage.delete(f"{_folder(job.project_id, job.job_id)}/archive.zip")
    return job


def _read(project_id: int, job_id: str) -> ImportJob | None:
    name = f"{_folder(project_id, job_id)}/status.json"
    # The writer replaces the file by delete + save; one retry covers a read in between.
    for attempt in range(2):
        try:
            with default_storage.open(name, "rb") as handle:
                return ImportJob(**json.loads(handle.read()))
        except FileNotFoundError:
            if attempt == 0:
                time.sleep(0.05)
        except (ValueError, TypeError):
            logger.warning("Unreadable import status %s", name, exc_info=True)
            return None
    return None


def _write(job: ImportJob) -> None:
    name = f"{_folder(job.project_id, job.job_id)}/status.json"
    data = json.dumps(job.__dict__).encode()
    default_storage.delete(name)
    default_storage.save(name, ContentFile(data))
