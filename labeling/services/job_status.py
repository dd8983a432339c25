"""A dataset job's status file (imports and exports): `status.json` in storage, its lease and the
heartbeat that renews it. Both job kinds keep their state there, so a poll, a sweep and the
worker read the same thing without a table.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.core.files.storage import default_storage

from project.heartbeat import Heartbeat
from project.storage import replace_file

logger = logging.getLogger(__name__)

# Each job is a folder <root>/<project id>/<job id>/ holding its status.json and its file.
EXPORTS_ROOT = "exports"
IMPORTS_ROOT = "imports"

Job = TypeVar("Job")
# The worker's thread and its lease heartbeat both write status.json.
_write_lock = threading.Lock()


class LeasedJob(Protocol):
    lease_expires: float


def lease_deadline() -> float:
    return time.time() + float(settings.LOUPE_IMPORT_LEASE_S)


def lease_heartbeat(job: LeasedJob, write: Callable[[], None], name: str) -> Heartbeat:
    """Renews the job's lease every third of it; progress writes renew it too."""

    def renew() -> None:
        job.lease_expires = lease_deadline()
        write()

    return Heartbeat(renew, interval_s=settings.LOUPE_IMPORT_LEASE_S / 3, name=name)


def read_status(name: str, job_class: type[Job], what: str) -> Job | None:
    """The job stored at `name`, or None when there is none or it cannot be read (`what` names
    the kind in the log)."""
    known = {f.name for f in fields(job_class)}  # type: ignore[arg-type]
    # The writer replaces the file in place (project.storage.replace_file); the retry covers a
    # storage without an atomic replace, where it is deleted and saved again.
    for attempt in range(2):
        try:
            with default_storage.open(name, "rb") as handle:
                data = json.loads(handle.read())
            return job_class(**{k: v for k, v in data.items() if k in known})
        except FileNotFoundError:
            if attempt == 0:
                time.sleep(0.05)
        except (ValueError, TypeError):
            logger.warning("Unreadable %s status %s", what, name, exc_info=True)
            return None
    return None


def write_status(name: str, job: Any) -> None:
    with _write_lock:
        data = json.dumps(job.__dict__).encode()
        # In place: a poll between a delete and a save would find no job (404) on S3.
        replace_file(name, data)


def project_job_folders(project_id: int) -> tuple[str, str]:
    """The folders of a project's dataset export and import jobs."""
    return f"{EXPORTS_ROOT}/{project_id}", f"{IMPORTS_ROOT}/{project_id}"


def job_folders(root: str) -> list[tuple[int, str]]:
    """(project_id, job_id) of every job folder under `root` (`<root>/<project id>/<job id>/`)."""
    found: list[tuple[int, str]] = []
    try:
        project_dirs, _ = default_storage.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return found
    for project_dir in project_dirs:
        if project_dir.isdigit():
            job_dirs, _ = default_storage.listdir(f"{root}/{project_dir}")
            found += [(int(project_dir), job_dir) for job_dir in job_dirs]
    return found
