"""The copy itself: the source's Training API, its image downloads, and the project, tags,
images and labels they become (see the package docstring)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin

import httpx
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile

from labeling.models import Image, Project, Tag
from labeling.services.customvision_import.status import (
    CvImportJob,
    SourceError,
    write_job,
)
from labeling.services.ingest import ingest_images
from labeling.services.job_status import lease_deadline
from labeling.services.projects import create_project, create_tag
from labeling.services.regions import set_image_regions
from labeling.services.tagging import set_image_tags
from project.errors import LoupeError

API = "customvision/v3.3/training"
PAGE = 256  # Custom Vision's largest `take`
BATCH = 32  # images downloaded, then ingested together
DOWNLOADS = 4  # files downloaded at once: a round trip each, mostly waiting
TIMEOUT_S = 30.0
_PROGRESS_EVERY_S = 1.0

Transport = httpx.BaseTransport


class Source:
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

    def __enter__(self) -> Source:
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


def copy_project(
    job: CvImportJob,
    source: Source,
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
    # Pipelined: the next batch downloads while this one is stored (the source's web process
    # and this worker then work at the same time).
    with ThreadPoolExecutor(max_workers=DOWNLOADS, thread_name_prefix="cv-download") as pool:
        previous: list[tuple[dict[str, Any], Future[bytes]]] = []
        for batch in _batches(job, _source_images(source, base)):
            started = [(image, pool.submit(_fetch, source, image)) for image in batch]
            if previous:
                _copy_batch(job, previous, project, tags, user)
                job.progress = min(0.99, len(job.copied) / max(job.total, 1))
                on_progress(job)
                if time.monotonic() - last_write >= _PROGRESS_EVERY_S:
                    job.lease_expires = lease_deadline()
                    write_job(job)
                    last_write = time.monotonic()
            previous = started
        if previous:
            _copy_batch(job, previous, project, tags, user)


def _batches(job: CvImportJob, images: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The source's images not copied yet, BATCH at a time."""
    batch: list[dict[str, Any]] = []
    for image in images:
        if str(image.get("id")) not in job.copied:
            batch.append(image)
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _fetch(source: Source, image: dict[str, Any]) -> bytes:
    url = image.get("originalImageUri") or image.get("resizedImageUri")
    if not url:
        raise _Refused("no_file", "The endpoint gives no address for its file.")
    return source.download(str(url))


def _source_images(source: Source, base: str) -> Iterator[dict[str, Any]]:
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
    job: CvImportJob, source: Source, info: dict[str, Any], user: AbstractBaseUser
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
    loupe_domain, note = domain_for(str(domain.get("name") or ""))
    if note:
        job.notes.append(note)
    project = create_project(
        name=job.source_name[:200],
        kind=kind,
        domain=loupe_domain,
        description=str(info.get("description") or "")
        + f"\nImported from Custom Vision project {job.source_project_id} at {job.endpoint}.",
        by=user,
    )
    job.target_project_id = project.pk
    write_job(job)  # a rerun finds this project rather than making another
    return project


def domain_for(source_domain: str) -> tuple[str, str]:
    """(Loupe domain, note) for a Custom Vision domain name. Loupe has models for General and
    General (compact) only; Azure's Food, Landmarks, Retail, Logo and Products on Shelves
    domains (and the [A1]/[S1] variants) come over as the General domain of the same size,
    said in the import's report rather than silently: a user who chose Food expected a
    food-tuned model, and retraining here gives a general one."""
    name = source_domain.strip()
    compact = "compact" in name.lower()
    domain = Project.Domain.GENERAL_COMPACT if compact else Project.Domain.GENERAL
    family = name.split("(")[0].split("[")[0].strip().lower()
    if family in {"general", ""}:
        return domain, ""
    return domain, (
        f"Custom Vision's {name} domain has no Loupe model: the project uses "
        f"{domain.label}, and trains a general model on your images."
    )


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
    started: list[tuple[dict[str, Any], Future[bytes]]],
    project: Project,
    tags: dict[str, Tag],
    user: AbstractBaseUser,
) -> None:
    """Store a downloaded batch. Classification images with the same tags go through ingest
    together, tagged there (no write per image); detection boxes are set image by image."""
    groups: dict[tuple[int, ...], list[tuple[dict[str, Any], bytes]]] = defaultdict(list)
    for image, future in started:
        try:
            data = future.result()
        except _Refused as refused:
            _refuse(job, image, refused.code, refused.message)
            continue
        key = () if project.is_detection else tuple(t.pk for t in _tags_of(image, tags))
        groups[key].append((image, data))
    for tag_ids, group in groups.items():
        _store_group(job, group, list(tag_ids), project, tags, user)


def _store_group(
    job: CvImportJob,
    group: list[tuple[dict[str, Any], bytes]],
    tag_ids: list[int],
    project: Project,
    tags: dict[str, Tag],
    user: AbstractBaseUser,
) -> None:
    files = [ContentFile(data, name=f"{image.get('id')}.img") for image, data in group]
    try:
        report = ingest_images(
            project=project, files=files, by=user, tag_ids=tag_ids, source=Image.Source.IMPORT
        )
        labeled = bool(tag_ids)
    except LoupeError:
        # Tags this project's kind refuses (two on a multiclass image): store the images
        # untagged, and let each image's labelling say why, one by one.
        report = ingest_images(project=project, files=files, by=user, source=Image.Source.IMPORT)
        labeled = False
    stored = {a.index: a.image_id for a in report.accepted}
    to_label = set() if labeled else set(stored)
    # An image stored by an earlier run that stopped before it saved its status comes back as
    # a duplicate of a row no source image maps to yet: map it (and label it). A duplicate of
    # anything mapped (or stored in this batch) is a second copy of the same content: refused.
    taken = set(job.copied.values()) | {a.image_id for a in report.accepted}
    for rejected in report.rejected:
        if rejected.code == "duplicate" and rejected.image_id and rejected.image_id not in taken:
            stored[rejected.index] = rejected.image_id
            to_label.add(rejected.index)
        else:
            _refuse(job, group[rejected.index][0], rejected.code, rejected.message)
    rows = Image.objects.in_bulk([stored[i] for i in to_label])
    for index, image_id in sorted(stored.items()):
        item = group[index][0]
        if index in to_label:
            image = rows[image_id]
            image.project = project
            try:
                _label(image, item, tags, user)
            except LoupeError as err:
                _refuse(job, item, err.code, err.message)
        job.copied[str(item.get("id"))] = image_id


def _tags_of(item: dict[str, Any], tags: dict[str, Tag]) -> list[Tag]:
    found = {str(t.get("tagId")) for t in item.get("tags") or []}
    return sorted((tags[t] for t in found if t in tags), key=lambda tag: tag.pk)


def _label(
    image: Image, item: dict[str, Any], tags: dict[str, Tag], user: AbstractBaseUser
) -> None:
    """The source image's tags or boxes onto the stored image (replacing what it has)."""
    image_tags = _tags_of(item, tags)
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
