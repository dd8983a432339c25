"""Dataset import jobs: the uploaded archive and the job's status, kept in the configured storage.

A job imports images with their labels (`import_dataset`), or labels alone onto images the
project has (`labels_only`: `import_labels`; a bare annotation file is kept zipped, so both
kinds read `archive.zip` and share everything below).

Invariant: job `<job_id>` of project `<project_id>` is the folder `imports/<project_id>/<job_id>/`
of the default storage, holding `archive.zip` (removed when the job ends) and `status.json`
(written by the web when the job starts, then by the worker at most once a second and at the
end). The worker reads both through the storage, so it need not share the web's disk, and a
reload of the page reads the status, so nothing is lost with a dropped connection.

A worker that dies mid-import loses its open transaction (nothing half-imported is committed;
images stored so far are files without rows). With acks_late Celery redelivers the task, and the
rerun imports from the archive again; a job whose status is `done` or `failed` is never re-run.

Every job ends (done or failed), whatever the archive holds and whatever becomes of its worker:
- a running job holds a lease (`lease_expires`, epoch seconds) that a heartbeat thread renews
  every third of LOUPE_IMPORT_LEASE_S; a delivery that finds a live lease does nothing, so a
  redelivered or re-sent message never runs the same job twice at once;
- `sweep_imports` (beat, every minute) re-queues a running job whose lease ran out (its worker
  died without a word) while it has runs left (MAX_ATTEMPTS), then fails it, and fails a job
  no worker took within LOUPE_IMPORT_QUEUED_MAX_S (its message was lost with Redis);
- an unexpected exception fails the job with a generic reason (details in the log), and every
  ending deletes `archive.zip`;
- a broker outage when the job is queued fails it at once with a reason (project/queue.py).
Two sweeps or a sweep and a late worker can race on `status.json` (storage has no compare-and-
set); the worst case is a job re-queued whose rerun finds it finished or leased and does nothing.
"""

from __future__ import annotations

import io
import logging
import posixpath
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage

from labeling.access import require_role
from labeling.models import Project, Role
from labeling.services.datasets import ImportReport, dataset_format, import_dataset, import_labels
from labeling.services.job_status import (
    IMPORTS_ROOT,
    job_folders,
    lease_deadline,
    lease_heartbeat,
    read_status,
    write_status,
)
from project.errors import LoupeError, NotFound, ValidationFailed
from project.queue import enqueue, send

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_PROGRESS_EVERY_S = 1.0
MAX_ATTEMPTS = 2
IMPORT_TASK = "labeling.import_dataset"
IMPORT_QUEUE = "celery"
_ROOT = IMPORTS_ROOT
_UNEXPECTED = (
    "The import stopped on an unexpected error; nothing was imported. The error was logged "
    "for the administrator; try again, or import the archive in parts."
)
_NOT_QUEUED = (
    "The task queue (Redis) could not be reached, so no worker got this import. Check that "
    "Redis and the worker run, then import again."
)


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
    user_id: int | None = None  # the importer: a re-queued job runs as them
    created: float = 0.0  # epoch seconds
    lease_expires: float = 0.0  # epoch seconds; a running job's worker keeps it in the future
    labels_only: bool = False  # annotations for images the project has (import_labels)
    skipped: list[dict[str, str]] = field(default_factory=list)  # labels only: items left out

    @property
    def is_finished(self) -> bool:
        return self.state in {DONE, FAILED}

    @property
    def percent(self) -> int:
        return round(100 * self.progress)


def _folder(project_id: int, job_id: str) -> str:
    return f"{_ROOT}/{project_id}/{job_id}"


def start_import(
    *,
    project: Project,
    upload: IO[bytes],
    format_name: str,
    by: AbstractBaseUser,
    labels_only: bool = False,
) -> ImportJob:
    """Keep the uploaded zip in storage and queue the worker task; returns the queued job.

    `labels_only`: the upload holds annotations for images already in the project, as a zip
    or as the bare annotation file (zipped here, under its own name).
    """
    require_role(by, project, Role.ADMIN)
    fmt = dataset_format(project, format_name)
    if labels_only and not fmt.names_images:
        raise ValidationFailed(
            f"{fmt.label} does not name each image file, so it cannot label images already "
            "in the project; import it in a zip with the images."
        )
    if labels_only and not zipfile.is_zipfile(upload):
        upload = _zipped(upload)
    elif not zipfile.is_zipfile(upload):
        raise ValidationFailed(
            "The upload is not a zip archive; zip the images together with the annotation file."
        )
    upload.seek(0)
    job = ImportJob(
        project_id=project.pk,
        job_id=str(uuid.uuid4()),
        format=fmt.name,
        user_id=by.pk,
        created=time.time(),
        labels_only=labels_only,
    )
    default_storage.save(f"{_folder(project.pk, job.job_id)}/archive.zip", upload)
    _write(job)
    enqueue(
        IMPORT_TASK,
        *_task_args(job),
        queue=IMPORT_QUEUE,
        on_error=lambda err: _fail_if_queued(project.pk, job.job_id, _NOT_QUEUED),
    )
    return job


def _zipped(upload: IO[bytes]) -> IO[bytes]:
    """A bare annotation file as a one-member zip, so the worker reads every job one way."""
    name = posixpath.basename(str(getattr(upload, "name", "") or "annotations").replace("\\", "/"))
    upload.seek(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name or "annotations", upload.read())
    buffer.seek(0)
    return buffer


def _task_args(job: ImportJob) -> tuple[int, str, int | None, str]:
    return (job.project_id, job.job_id, job.user_id, job.format)


def get_import(*, project: Project, job_id: str) -> ImportJob:
    """The job's last written status (the caller has checked access to `project`)."""
    job = _read(project.pk, job_id)
    if job is None:
        raise NotFound("This import does not exist.")
    return job


def run_import(*, project_id: int, job_id: str, user_id: int, format_name: str) -> ImportJob:
    """The worker's side: import the stored archive and record the outcome. Idempotent.

    Always ends the job (done or failed) unless another worker holds its lease.
    """
    job = _read(project_id, job_id)
    if job is None or job.is_finished:
        return job or ImportJob(project_id, job_id, format_name, state=FAILED)
    if job.state == RUNNING and job.lease_expires > time.time():
        logger.info("Import %s is held by another worker; this delivery does nothing", job_id)
        return job
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
    job.lease_expires = lease_deadline()
    _write(job)
    with lease_heartbeat(job, lambda: _write(job), f"import-{job.job_id}"):
        _import(job, user_id=user_id, format_name=format_name)
    return _finish(job, job.state, job.message)


def _import(job: ImportJob, *, user_id: int, format_name: str) -> None:
    """Run the import and set `job.state`, `message`, `report`, `problems`; never raises."""
    on_progress = _progress_writer(job)
    archive = f"{_folder(job.project_id, job.job_id)}/archive.zip"
    try:
        project = Project.objects.get(pk=job.project_id)
        user = get_user_model().objects.get(pk=user_id)
        importer = import_labels if job.labels_only else import_dataset
        with default_storage.open(archive, "rb") as handle:
            report = importer(
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
    except SoftTimeLimitExceeded:
        job.state = FAILED
        job.message = (
            "The import ran past its time limit; nothing was imported. Import the archive in parts."
        )
    except Exception:
        # Whatever the archive holds, the job ends: details go to the log, not to the user.
        logger.exception(
            "Import %s of project %s (format %s, attempt %s) failed unexpectedly",
            job.job_id,
            job.project_id,
            format_name,
            job.attempts,
        )
        job.state, job.message = FAILED, _UNEXPECTED
        job.problems = [{"item": "archive", "code": "unexpected", "message": _UNEXPECTED}]
    else:
        _record_report(job, report)


def _progress_writer(job: ImportJob) -> Callable[[float, str], None]:
    """The importer's progress callback: it updates the job, and writes it (renewing the lease)
    at most every _PROGRESS_EVERY_S."""
    last_write = time.monotonic()

    def on_progress(fraction: float, message: str) -> None:
        nonlocal last_write
        job.progress, job.message = fraction, message
        if time.monotonic() - last_write >= _PROGRESS_EVERY_S:
            job.lease_expires = lease_deadline()
            _write(job)
            last_write = time.monotonic()

    return on_progress


def _record_report(job: ImportJob, report: ImportReport) -> None:
    job.report = report.as_dict()
    job.problems = job.report.pop("problems")  # type: ignore[assignment]
    job.skipped = job.report.pop("skipped")  # type: ignore[assignment]
    job.state = DONE if report.ok else FAILED
    job.message = (
        _done_message(job, report.images)
        if report.ok
        else f"Nothing was imported: {len(report.problems)} problem"
        f"{'s' if len(report.problems) != 1 else ''} to fix."
    )


def _done_message(job: ImportJob, images: int) -> str:
    if not job.labels_only:
        return f"Imported {images} images."
    skipped = len(job.skipped)
    left_out = f"; {skipped} listed image{'s' if skipped != 1 else ''} skipped" if skipped else ""
    return f"Labeled {images} image{'s' if images != 1 else ''} of the project{left_out}."


def sweep_imports(*, now: float | None = None) -> int:
    """Re-queue or fail import jobs whose worker vanished; returns how many it changed.

    A running job with an expired lease goes back to the queue while it has runs left, else
    fails; a job still queued after LOUPE_IMPORT_QUEUED_MAX_S fails (no worker got it).
    """
    now = time.time() if now is None else now
    changed = 0
    for project_id, job_id in job_folders(_ROOT):
        job = _read(project_id, job_id)
        if job is None or job.is_finished:
            continue
        if job.state == RUNNING and job.lease_expires < now:
            changed += 1
            if job.attempts < MAX_ATTEMPTS and job.user_id is not None:
                job.state, job.message = QUEUED, "The worker was lost; waiting for another one."
                job.lease_expires = 0.0
                _write(job)
                send(
                    IMPORT_TASK,
                    *_task_args(job),
                    queue=IMPORT_QUEUE,
                    on_error=lambda err, job=job: _fail_if_queued(
                        job.project_id, job.job_id, _NOT_QUEUED
                    ),
                )
            else:
                _finish(
                    job,
                    FAILED,
                    f"The worker importing this archive stopped without a word ({job.attempts} "
                    f"attempt{'s' if job.attempts != 1 else ''}): it was killed or ran out of "
                    "memory. Nothing was imported; try again, or import the archive in parts.",
                )
        elif job.state == QUEUED and now - _created(job) > settings.LOUPE_IMPORT_QUEUED_MAX_S:
            changed += 1
            _finish(
                job,
                FAILED,
                "No worker took this import in time, so nothing was imported. Check that the "
                "worker runs, then import again.",
            )
    return changed


def _created(job: ImportJob) -> float:
    if job.created:
        return job.created
    # A job written before `created` existed: its status file is at least that old.
    name = f"{_folder(job.project_id, job.job_id)}/status.json"
    try:
        return default_storage.get_modified_time(name).timestamp()
    except (OSError, NotImplementedError):
        return time.time()


def _fail_if_queued(project_id: int, job_id: str, message: str) -> None:
    job = _read(project_id, job_id)
    if job is not None and job.state == QUEUED:
        _finish(job, FAILED, message)


def _finish(job: ImportJob, state: str, message: str) -> ImportJob:
    job.state, job.message, job.progress = state, message, 1.0
    job.lease_expires = 0.0
    _write(job)
    try:
        default_storage.delete(f"{_folder(job.project_id, job.job_id)}/archive.zip")
    except OSError:
        logger.warning("Could not delete the archive of import %s", job.job_id, exc_info=True)
    return job


def _read(project_id: int, job_id: str) -> ImportJob | None:
    return read_status(f"{_folder(project_id, job_id)}/status.json", ImportJob, "import")


def _write(job: ImportJob) -> None:
    write_status(f"{_folder(job.project_id, job.job_id)}/status.json", job)
