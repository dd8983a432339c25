"""The Custom Vision import job's status file: `cvimports/<job_id>/status.json` in the default
storage (see the package docstring), its lease and heartbeat."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from labeling.services.job_status import lease_heartbeat, read_status, write_status
from project.errors import LoupeError
from project.heartbeat import Heartbeat

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ROOT = "cvimports"


class SourceError(LoupeError):
    """The Custom Vision endpoint refused or failed a request."""

    code = "source_error"
    http_status = 502


@dataclass
class CvImportJob:
    job_id: str
    endpoint: str
    source_project_id: str
    user_id: int | None = None
    state: str = QUEUED
    progress: float = 0.0
    message: str = "Waiting for a worker."
    source_name: str = ""
    target_project_id: int | None = None
    total: int = 0
    copied: dict[str, int] = field(default_factory=dict)  # source image id -> Loupe image id
    refused: list[dict[str, str]] = field(default_factory=list)  # {item, code, message}
    tag_map: dict[str, int] = field(default_factory=dict)  # source tag id -> Loupe tag id
    tags_created: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what came over changed, and why
    runs: int = 0
    created: float = 0.0
    finished: float = 0.0
    lease_expires: float = 0.0

    @property
    def is_finished(self) -> bool:
        return self.state in {DONE, FAILED}

    @property
    def percent(self) -> int:
        return round(100 * self.progress)

    def report(self) -> dict[str, Any]:
        """What the page, the API and the command show."""
        return {
            "id": self.job_id,
            "endpoint": self.endpoint,
            "source_project_id": self.source_project_id,
            "source_name": self.source_name,
            "project_id": self.target_project_id,
            "state": self.state,
            "progress": self.progress,
            "message": self.message,
            "images_total": self.total,
            "images_copied": len(self.copied),
            "images_refused": len(self.refused),
            "refused": self.refused,
            "tags_created": self.tags_created,
            "notes": self.notes,
            "runs": self.runs,
        }


def fail_if_queued(job_id: str, message: str) -> None:
    job = read_job(job_id)
    if job is not None and job.state == QUEUED:
        job.state, job.message, job.finished = FAILED, message, time.time()
        write_job(job)


def heartbeat(job: CvImportJob) -> Heartbeat:
    return lease_heartbeat(job, lambda: write_job(job), name=f"cv-{job.job_id}")


def read_job(job_id: str) -> CvImportJob | None:
    return read_status(f"{ROOT}/{job_id}/status.json", CvImportJob, "Custom Vision import")


def write_job(job: CvImportJob) -> None:
    write_status(f"{ROOT}/{job.job_id}/status.json", job)
