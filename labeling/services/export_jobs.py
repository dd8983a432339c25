"""Dataset export jobs: a worker writes the zip, the page polls its progress, then downloads it.

Invariant: job `<job_id>` of project `<project_id>` is the folder `exports/<project_id>/<job_id>/`
of the default storage, holding `status.json` (written by the web when the job starts, then by
the worker at most once a second and at the end) and, once done, the archive itself. The worker
builds the zip in a local temporary file (streamed, see `datasets.exports`) and then saves it
through the storage, so web and worker need not share a disk (media may be S3) and the
download reads it back through the storage.

Every job ends (done or failed), with the rules of the import jobs (`import_jobs`): a running
job holds a lease renewed by a heartbeat and by its progress writes; a delivery that finds a
live lease does nothing; `sweep_exports` (beat, every minute) re-queues a job whose lease ran
out while it has runs left, then fails it, and fails a job no worker took within
LOUPE_IMPORT_QUEUED_MAX_S; an unexpected exception fails it with a generic reason; a broker
outage when it is queued fails it at once. A rerun starts from scratch (the temporary file of
a dead worker died with it). The sweep also deletes finished exports older than
LOUPE_EXPORT_KEEP_S, archive and status, so exports do not pile up in storage.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils.text import slugify

from labeling.access import require_role
from labeling.models import Project, Role, SavedFilter
from labeling.services.datasets import ExportSelection, dataset_format, export_dataset
from labeling.services.datasets.exports import check_selection
from labeling.services.job_status import (
    EXPORTS_ROOT,
    job_folders,
    lease_deadline,
    lease_heartbeat,
    read_status,
    write_status,
)
from labeling.services.saved_filters import export_selection
from project.errors import LoupeError, NotFound, ValidationFailed
from project.queue import enqueue, send

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_PROGRESS_EVERY_S = 1.0
MAX_ATTEMPTS = 2
EXPORT_TASK = "labeling.export_dataset"
EXPORT_QUEUE = "celery"
_ROOT = EXPORTS_ROOT
_UNEXPECTED = (
    "The export stopped on an unexpected error. The error was logged for the administrator; "
    "try again, or export fewer images (choose tags)."
)
_NOT_QUEUED = (
    "The task queue (Redis) could not be reached, so no worker got this export. Check that "
    "Redis and the worker run, then export again."
)


@dataclass
class ExportJob:
    project_id: int
    job_id: str
    format: str
    tag_ids: list[int] = field(default_factory=list)
    status_filter: str = "all"
    # The name of the saved filter the images were chosen by, as it was when the export
    # started ("" for a live selection); `tag_ids` and `status_filter` hold what it resolved to.
    saved_filter: str = ""
    state: str = QUEUED
    progress: float = 0.0
    message: str = "Waiting for a worker."
    attempts: int = 0
    user_id: int | None = None  # the exporter: a re-queued job runs as them
    created: float = 0.0  # epoch seconds
    finished: float = 0.0
    lease_expires: float = 0.0  # epoch seconds; a running job's worker keeps it in the future
    images: int = 0
    size_bytes: int = 0
    file: str = ""  # the archive's storage name, once done
    download_name: str = ""
    problem_code: str = ""

    @property
    def is_finished(self) -> bool:
        return self.state in {DONE, FAILED}

    @property
    def percent(self) -> int:
        return round(100 * self.progress)

    @property
    def selection(self) -> ExportSelection:
        return ExportSelection(tag_ids=tuple(self.tag_ids), status=self.status_filter)

    def as_dict(self) -> dict[str, Any]:
        """What the API and the page show (no lease, attempts or storage names)."""
        return {
            "id": self.job_id,
            "format": self.format,
            "tag_ids": self.tag_ids,
            "filter": self.status_filter,
            "saved_filter": self.saved_filter or None,
            "state": self.state,
            "progress": self.progress,
            "message": self.message,
            "images": self.images,
            "size_bytes": self.size_bytes,
            "file_name": self.download_name,
            "created": self.created,
            "finished": self.finished or None,
            "problem_code": self.problem_code or None,
        }


def _folder(project_id: int, job_id: str) -> str:
    return f"{_ROOT}/{project_id}/{job_id}"


def start_export(
    *,
    project: Project,
    format_name: str,
    by: AbstractBaseUser,
    selection: ExportSelection = ExportSelection(),
    saved_filter: SavedFilter | None = None,
) -> ExportJob:
    """Check the request, write the queued job's status and queue the worker task.

    A `saved_filter` (instead of `selection`) is resolved here, once: the job keeps the tags and
    status it named at this moment (labeling.services.saved_filters).
    """
    require_role(by, project, Role.REVIEWER)
    fmt = dataset_format(project, format_name)
    if saved_filter is not None:
        if saved_filter.project_id != project.pk:
            raise NotFound("This project has no such saved filter.")
        if selection != ExportSelection():
            raise ValidationFailed("Choose a saved filter, or tags and a filter, not both.")
        selection = export_selection(saved_filter)
    check_selection(project, selection)
    job = ExportJob(
        project_id=project.pk,
        job_id=str(uuid.uuid4()),
        format=fmt.name,
        tag_ids=sorted(set(selection.tag_ids)),
        status_filter=selection.status,
        saved_filter=saved_filter.name if saved_filter is not None else "",
        user_id=by.pk,
        created=time.time(),
        download_name=f"{slugify(project.name) or 'project'}-{fmt.name}.zip",
    )
    _write(job)
    enqueue(
        EXPORT_TASK,
        project.pk,
        job.job_id,
        queue=EXPORT_QUEUE,
        on_error=lambda err: _fail_if_queued(project.pk, job.job_id, _NOT_QUEUED),
    )
    return job


def get_export(*, project: Project, job_id: str) -> ExportJob:
    """The job's last written status (the caller has checked access to `project`)."""
    job = _read(project.pk, job_id)
    if job is None:
        raise NotFound("This export does not exist (finished exports are kept for a while).")
    return job


def recent_exports(*, project: Project, limit: int = 5) -> list[ExportJob]:
    """The project's latest exports, newest first (the caller has checked access)."""
    try:
        job_dirs, _ = default_storage.listdir(f"{_ROOT}/{project.pk}")
    except (FileNotFoundError, NotADirectoryError):
        return []
    jobs = [job for job_id in job_dirs if (job := _read(project.pk, job_id)) is not None]
    return sorted(jobs, key=lambda job: job.created, reverse=True)[:limit]


def open_export(*, project: Project, job_id: str) -> tuple[ExportJob, IO[bytes]]:
    """The finished job and its archive, opened for reading (the caller closes it)."""
    job = get_export(project=project, job_id=job_id)
    if job.state != DONE:
        raise ValidationFailed(
            "This export has not finished yet." if not job.is_finished else job.message
        )
    try:
        return job, default_storage.open(job.file, "rb")
    except FileNotFoundError:
        raise NotFound("The archive of this export is gone; export again.") from None


def run_export(*, project_id: int, job_id: str) -> ExportJob:
    """The worker's side: write the archive and record the outcome. Idempotent.

    Always ends the job (done or failed) unless another worker holds its lease.
    """
    job = _read(project_id, job_id)
    if job is None or job.is_finished:
        return job or ExportJob(project_id, job_id, "", state=FAILED)
    if job.state == RUNNING and job.lease_expires > time.time():
        logger.info("Export %s is held by another worker; this delivery does nothing", job_id)
        return job
    job.attempts += 1
    if job.attempts > MAX_ATTEMPTS:
        return _finish(
            job, FAILED, "The export stopped its worker twice; try again, or export fewer images."
        )
    job.state, job.message = RUNNING, "Reading the labels."
    job.lease_expires = lease_deadline()
    _write(job)
    with lease_heartbeat(job, lambda: _write(job), f"export-{job.job_id}"):
        _export(job)
    return _finish(job, job.state, job.message)


def _export(job: ExportJob) -> None:
    """Write the archive and set `job.state`, `message`, `file`; never raises."""
    last_write = time.monotonic()

    def on_progress(fraction: float, message: str) -> None:
        nonlocal last_write
        job.progress, job.message = fraction, message
        if time.monotonic() - last_write >= _PROGRESS_EVERY_S:
            job.lease_expires = lease_deadline()
            _write(job)
            last_write = time.monotonic()

    try:
        project = Project.objects.get(pk=job.project_id)
        user = get_user_model().objects.get(pk=job.user_id)
        with tempfile.TemporaryFile(suffix=".zip") as out:
            report = export_dataset(
                project=project,
                format_name=job.format,
                by=user,
                out=out,
                selection=job.selection,
                on_progress=on_progress,
            )
            job.message = "Saving the archive."
            _write(job)
            out.seek(0, 2)
            job.size_bytes = out.tell()
            out.seek(0)
            name = f"{_folder(job.project_id, job.job_id)}/{job.download_name}"
            job.file = default_storage.save(name, File(out, name=job.download_name))
    except LoupeError as err:
        job.state, job.message, job.problem_code = FAILED, err.message, err.code
    except (Project.DoesNotExist, get_user_model().DoesNotExist):
        job.state, job.message = FAILED, "The project or its exporter is gone."
    except SoftTimeLimitExceeded:
        job.state = FAILED
        job.message = "The export ran past its time limit; export fewer images (choose tags)."
    except Exception:
        # Whatever storage holds, the job ends: details go to the log, not to the user.
        logger.exception(
            "Export %s of project %s (format %s, attempt %s) failed unexpectedly",
            job.job_id,
            job.project_id,
            job.format,
            job.attempts,
        )
        job.state, job.message, job.problem_code = FAILED, _UNEXPECTED, "unexpected"
    else:
        job.state, job.images = DONE, report.images
        job.message = f"Exported {report.images} image{'s' if report.images != 1 else ''}."


def sweep_exports(*, now: float | None = None) -> int:
    """Re-queue or fail export jobs whose worker vanished, delete expired ones; returns how
    many it changed."""
    now = time.time() if now is None else now
    changed = 0
    for project_id, job_id in job_folders(_ROOT):
        job = _read(project_id, job_id)
        if job is None:
            continue
        if job.is_finished:
            if now - (job.finished or job.created) > settings.LOUPE_EXPORT_KEEP_S:
                _delete(job)
                changed += 1
        elif job.state == RUNNING and job.lease_expires < now:
            changed += 1
            if job.attempts < MAX_ATTEMPTS:
                job.state, job.message = QUEUED, "The worker was lost; waiting for another one."
                job.lease_expires = 0.0
                _write(job)
                send(
                    EXPORT_TASK,
                    job.project_id,
                    job.job_id,
                    queue=EXPORT_QUEUE,
                    on_error=lambda err, job=job: _fail_if_queued(
                        job.project_id, job.job_id, _NOT_QUEUED
                    ),
                )
            else:
                _finish(
                    job,
                    FAILED,
                    f"The worker writing this export stopped without a word ({job.attempts} "
                    f"attempt{'s' if job.attempts != 1 else ''}): it was killed or ran out of "
                    "memory. Try again, or export fewer images.",
                )
        elif job.state == QUEUED and now - job.created > settings.LOUPE_IMPORT_QUEUED_MAX_S:
            changed += 1
            _finish(
                job,
                FAILED,
                "No worker took this export in time. Check that the worker runs, then export "
                "again.",
            )
    return changed


def _delete(job: ExportJob) -> None:
    folder = _folder(job.project_id, job.job_id)
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in files:
        try:
            default_storage.delete(f"{folder}/{name}")
        except OSError:
            logger.warning("Could not delete %s/%s of an expired export", folder, name)


def _fail_if_queued(project_id: int, job_id: str, message: str) -> None:
    job = _read(project_id, job_id)
    if job is not None and job.state == QUEUED:
        _finish(job, FAILED, message)


def _finish(job: ExportJob, state: str, message: str) -> ExportJob:
    job.state, job.message, job.progress = state, message, 1.0
    job.lease_expires = 0.0
    job.finished = time.time()
    _write(job)
    return job


def _read(project_id: int, job_id: str) -> ExportJob | None:
    return read_status(f"{_folder(project_id, job_id)}/status.json", ExportJob, "export")


def _write(job: ExportJob) -> None:
    write_status(f"{_folder(job.project_id, job.job_id)}/status.json", job)
