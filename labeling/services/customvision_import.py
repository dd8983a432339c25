"""Import a whole Custom Vision project through Custom Vision's own Training API (v3.3).

Given an endpoint, a training key and a project id, a new Loupe project gets the source's kind
(classification type or object detection), domain (compact or not), tags (Negative kept as
Negative) and every image, tagged and untagged, with its tags or boxes. Images go through the
same ingest as uploads (type by content, size, pixel bombs), labels through the editors'
services; an image it cannot copy is refused, with its reason, and the rest are copied.

Invariant: job `<job_id>` is the folder `cvimports/<job_id>/` of the default storage holding
`status.json`; the id is a hash of the endpoint and the source project id, so starting the
same import again finds the same job and the same target project. The status records, per
source image id, the Loupe image it became (`copied`), and is written after every batch:
an import interrupted (network, killed worker, Ctrl-C) and started again skips what it copied
and continues, and an image is never stored twice (the project's sha256 uniqueness answers a
re-sent one with the image already stored, which is then mapped, not copied again).

The training key is never written to storage: it travels in the task's message only. So a job
whose worker vanished cannot be re-queued by a sweep; `sweep_customvision_imports` fails it
with a reason after its lease runs out, and starting it again (page, API or command) resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from labeling.access import require_project_creator
from labeling.models import Image, Project, Tag
from labeling.services.ingest import ingest_images
from labeling.services.projects import create_project, create_tag
from labeling.services.regions import set_image_regions
from labeling.services.tagging import set_image_tags
from project.errors import LoupeError, NotFound, ValidationFailed
from project.heartbeat import Heartbeat
from project.queue import enqueue

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
TASK = "labeling.import_customvision"
QUEUE = "celery"
API = "customvision/v3.3/training"
PAGE = 256  # Custom Vision's largest `take`
BATCH = 16  # images downloaded, then ingested together
TIMEOUT_S = 30.0
_ROOT = "cvimports"
_PROGRESS_EVERY_S = 1.0
_RESUME = "Start the import again: it continues where it stopped."

Transport = httpx.BaseTransport


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
            "runs": self.runs,
        }


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
    job = _read(job_id)
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
    _write(job)
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
            on_error=lambda err: _fail_if_queued(
                job.job_id,
                "The task queue (Redis) could not be reached, so no worker got this import. "
                "Check that Redis and the worker run, then start it again.",
            ),
        )
    return job


def get_customvision_import(*, job_id: str, user: AbstractBaseUser) -> CvImportJob:
    """The job, if `user` started it (or is a superuser); NotFound otherwise."""
    job = _read(job_id) if job_id.isalnum() else None
    if job is None or (job.user_id != user.pk and not getattr(user, "is_superuser", False)):
        raise NotFound("This Custom Vision import does not exist.")
    return job


def recent_customvision_imports(*, user: AbstractBaseUser, limit: int = 10) -> list[CvImportJob]:
    try:
        job_dirs, _ = default_storage.listdir(_ROOT)
    except (FileNotFoundError, NotADirectoryError):
        return []
    jobs = [job for job_id in job_dirs if (job := _read(job_id)) is not None]
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
    job = _read(job_id)
    if job is None:
        raise NotFound("This Custom Vision import does not exist.")
    if job.state == DONE:
        return job
    if job.state == RUNNING and job.lease_expires > time.time():
        logger.info("Custom Vision import %s is held by another run", job_id)
        return job
    job.runs += 1
    job.state, job.message = RUNNING, "Reading the Custom Vision project."
    job.lease_expires = _lease_deadline()
    _write(job)
    with _heartbeat(job):
        try:
            user = get_user_model().objects.get(pk=job.user_id)
            with _Source(job.endpoint, training_key, transport) as source:
                _copy(job, source, user, on_progress)
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
    _write(job)
    return job


def sweep_customvision_imports(*, now: float | None = None) -> int:
    """Fail jobs whose run vanished (lease out) or that no worker took; returns how many."""
    now = time.time() if now is None else now
    changed = 0
    try:
        job_dirs, _ = default_storage.listdir(_ROOT)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for job_id in job_dirs:
        job = _read(job_id)
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
            _write(job)
            changed += 1
    return changed


# --- The copy ---------------------------------------------------------------------------------


class _Source:
    """The Custom Vision Training API of one project, and its image downloads.

    The training key goes to the endpoint's own host only, never to the hosts image URIs
    point at (Azure serves images from signed blob URLs)."""

    def __init__(self, endpoint: str, key: str, transport: Transport | None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._api = httpx.Client(
            base_url=f"{self.endpoint}/{API}/",
            headers={"Training-Key": key},
            timeout=TIMEOUT_S,
            transport=transport,
        )
        self._files = httpx.Client(timeout=TIMEOUT_S, transport=transport, follow_redirects=True)

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self._api.close()
        self._files.close()

    def get(self, path: str, **params: object) -> Any:
        try:
            response = self._api.get(path, params=params)
        except httpx.HTTPError as err:
            raise SourceError(f"The endpoint {self.endpoint} did not answer ({err}).") from None
        if response.status_code == 401:
            raise SourceError("The endpoint refused the training key (401).")
        if response.status_code == 404:
            raise SourceError(f"The endpoint has no “{path}” for this key (404).")
        if response.status_code >= 400:
            raise SourceError(
                f"The endpoint answered {response.status_code} to {path}: {response.text[:200]}"
            )
        try:
            return response.json()
        except ValueError:
            raise SourceError(f"The endpoint's answer to {path} is not JSON.") from None

    def download(self, url: str) -> bytes:
        limit = settings.LOUPE_MAX_IMAGE_BYTES
        url = urljoin(f"{self.endpoint}/", url)  # a server may answer a root-relative address
        try:
            with self._files.stream("GET", url) as response:
                response.raise_for_status()
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise _Refused("too_large", f"The image is larger than {limit} bytes.")
                return bytes(data)
        except httpx.HTTPStatusError as err:
            raise _Refused(
                "download_failed", f"Its file answered {err.response.status_code}."
            ) from None
        except httpx.HTTPError as err:
            raise SourceError(f"Downloading an image failed ({err}).") from None


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _copy(
    job: CvImportJob,
    source: _Source,
    user: AbstractBaseUser,
    on_progress: Callable[[CvImportJob], None],
) -> None:
    base = f"projects/{job.source_project_id}"
    info = source.get(base)
    job.source_name = str(info.get("name") or "Custom Vision project")
    project = _target_project(job, source, info, user)
    tags = _copy_tags(job, source.get(f"{base}/tags"), project, user)
    job.total = sum(int(source.get(f"{base}/images/{w}/count")) for w in ("tagged", "untagged"))
    job.message = f"Copying {job.total} images."
    last_write = 0.0
    pending: list[dict[str, Any]] = []
    for image in _source_images(source, base):
        if str(image.get("id")) in job.copied:
            continue
        pending.append(image)
        if len(pending) == BATCH:
            _copy_batch(job, source, pending, project, tags, user)
            pending = []
            job.progress = min(0.99, len(job.copied) / max(job.total, 1))
            on_progress(job)
            if time.monotonic() - last_write >= _PROGRESS_EVERY_S:
                job.lease_expires = _lease_deadline()
                _write(job)
                last_write = time.monotonic()
    if pending:
        _copy_batch(job, source, pending, project, tags, user)


def _source_images(source: _Source, base: str) -> Iterator[dict[str, Any]]:
    """Every image of the source, tagged then untagged, oldest first, one page at a time."""
    for which in ("tagged", "untagged"):
        skip = 0
        while True:
            page = source.get(f"{base}/images/{which}", take=PAGE, skip=skip, orderBy="Oldest")
            if not isinstance(page, list):
                raise SourceError(f"The endpoint's list of {which} images is not a list.")
            yield from (image for image in page if isinstance(image, dict))
            if len(page) < PAGE:
                break
            skip += PAGE


def _target_project(
    job: CvImportJob, source: _Source, info: dict[str, Any], user: AbstractBaseUser
) -> Project:
    if job.target_project_id is not None:
        project = Project.objects.filter(pk=job.target_project_id).first()
        if project is not None:
            return project
    settings_ = info.get("settings") or {}
    domain = source.get(f"domains/{settings_.get('domainId')}")
    if domain.get("type") == "ObjectDetection":
        kind = Project.Kind.DETECTION
    elif settings_.get("classificationType") == "Multilabel":
        kind = Project.Kind.MULTILABEL
    else:
        kind = Project.Kind.MULTICLASS
    compact = "compact" in str(domain.get("name", "")).lower()
    project = create_project(
        name=job.source_name[:200],
        kind=kind,
        domain=Project.Domain.GENERAL_COMPACT if compact else Project.Domain.GENERAL,
        description=str(info.get("description") or "")
        + f"\nImported from Custom Vision project {job.source_project_id} at {job.endpoint}.",
        by=user,
    )
    job.target_project_id = project.pk
    _write(job)  # a rerun finds this project rather than making another
    return project


def _copy_tags(
    job: CvImportJob, raw: Any, project: Project, user: AbstractBaseUser
) -> dict[str, Tag]:
    """The Loupe tag of each source tag id, created where missing (Negative stays Negative)."""
    existing = {tag.pk: tag for tag in project.tags.all()}
    by_name = {tag.name.lower(): tag for tag in existing.values()}
    tags: dict[str, Tag] = {}
    for item in raw if isinstance(raw, list) else []:
        source_id, name = str(item.get("id")), str(item.get("name") or "").strip()
        negative = item.get("type") == "Negative"
        tag = existing.get(job.tag_map.get(source_id, -1)) or by_name.get(name.lower())
        if negative and tag is None:
            tag = next((t for t in existing.values() if t.is_negative), None)
        if tag is None:
            try:
                tag = create_tag(
                    project=project,
                    name=name,
                    by=user,
                    kind=Tag.Kind.NEGATIVE if negative else Tag.Kind.REGULAR,
                )
            except LoupeError as err:
                job.refused.append(
                    {"item": f"tag {name}", "code": err.code, "message": err.message}
                )
                continue
            job.tags_created.append(tag.name)
            by_name[tag.name.lower()] = tag
        job.tag_map[source_id] = tag.pk
        tags[source_id] = tag
    return tags


def _copy_batch(
    job: CvImportJob,
    source: _Source,
    images: list[dict[str, Any]],
    project: Project,
    tags: dict[str, Tag],
    user: AbstractBaseUser,
) -> None:
    files: list[ContentFile] = []
    wanted: list[dict[str, Any]] = []
    for image in images:
        url = image.get("originalImageUri") or image.get("resizedImageUri")
        try:
            if not url:
                raise _Refused("no_file", "The endpoint gives no address for its file.")
            data = source.download(str(url))
        except _Refused as refused:
            _refuse(job, image, refused.code, refused.message)
            continue
        files.append(ContentFile(data, name=f"{image.get('id')}.img"))
        wanted.append(image)
    if not files:
        return
    report = ingest_images(project=project, files=files, by=user, source=Image.Source.IMPORT)
    stored = {a.index: a.image_id for a in report.accepted}
    # An image stored by an earlier run that stopped before it saved its status comes back as
    # a duplicate of a row no source image maps to yet: map it. A duplicate of anything mapped
    # (or stored in this batch) is a second copy of the same content in the source: refused.
    taken = set(job.copied.values()) | {a.image_id for a in report.accepted}
    for rejected in report.rejected:
        if rejected.code == "duplicate" and rejected.image_id and rejected.image_id not in taken:
            stored[rejected.index] = rejected.image_id  # stored by an earlier, interrupted run
        else:
            _refuse(job, wanted[rejected.index], rejected.code, rejected.message)
    rows = Image.objects.in_bulk(list(stored.values()))
    for index, image_id in sorted(stored.items()):
        image = rows[image_id]
        image.project = project
        try:
            _label(image, wanted[index], tags, user)
        except LoupeError as err:
            job.refused.append(
                {"item": str(wanted[index].get("id")), "code": err.code, "message": err.message}
            )
        job.copied[str(wanted[index].get("id"))] = image_id


def _label(
    image: Image, item: dict[str, Any], tags: dict[str, Tag], user: AbstractBaseUser
) -> None:
    """The source image's tags or boxes onto the stored image (replacing what it has)."""
    image_tags = [
        tags[str(t.get("tagId"))] for t in item.get("tags") or [] if str(t.get("tagId")) in tags
    ]
    if image.project.is_detection:
        regions = [
            (
                tags[str(r["tagId"])],
                float(r["left"]),
                float(r["top"]),
                float(r["width"]),
                float(r["height"]),
            )
            for r in item.get("regions") or []
            if str(r.get("tagId")) in tags and not tags[str(r["tagId"])].is_negative
        ]
        negative = not regions and any(tag.is_negative for tag in image_tags)
        set_image_regions(
            image=image, regions=regions, by=user, version=None, no_objects=negative or None
        )
    elif image_tags:
        set_image_tags(image=image, tags=image_tags, by=user, version=None)


def _refuse(job: CvImportJob, image: dict[str, Any], code: str, message: str) -> None:
    job.refused.append({"item": str(image.get("id")), "code": code, "message": message})


# --- Status file ------------------------------------------------------------------------------


def _fail_if_queued(job_id: str, message: str) -> None:
    job = _read(job_id)
    if job is not None and job.state == QUEUED:
        job.state, job.message, job.finished = FAILED, message, time.time()
        _write(job)


def _lease_deadline() -> float:
    return time.time() + settings.LOUPE_IMPORT_LEASE_S


def _heartbeat(job: CvImportJob) -> Heartbeat:
    def renew() -> None:
        job.lease_expires = _lease_deadline()
        _write(job)

    return Heartbeat(renew, interval_s=settings.LOUPE_IMPORT_LEASE_S / 3, name=f"cv-{job.job_id}")


def _read(job_id: str) -> CvImportJob | None:
    name = f"{_ROOT}/{job_id}/status.json"
    for attempt in range(2):
        try:
            with default_storage.open(name, "rb") as handle:
                data = json.loads(handle.read())
            return CvImportJob(**{k: v for k, v in data.items() if k in _FIELDS})
        except FileNotFoundError:
            if attempt == 0:
                time.sleep(0.05)
        except (ValueError, TypeError):
            logger.warning("Unreadable Custom Vision import status %s", name, exc_info=True)
            return None
    return None


_FIELDS = {f.name for f in fields(CvImportJob)}
_write_lock = threading.Lock()


def _write(job: CvImportJob) -> None:
    name = f"{_ROOT}/{job.job_id}/status.json"
    with _write_lock:
        data = json.dumps(job.__dict__).encode()
        default_storage.delete(name)
        default_storage.save(name, ContentFile(data))
