"""Training API image batches: base64 JSON (`images/files`), multipart or raw bytes (`images`),
URLs (`images/urls`), all answered as one ImageCreateSummary.

One pipeline for the three: the entries' labels are checked first (a tag of another project,
a tag set the project's kind forbids, a box outside its image: 400 for the whole request,
before anything is stored, naming the entry), then labeling's `ingest_images` stores the
images (one call per distinct tag set, so batch tags go through its bulk tagging), then
`add_regions` draws the boxes. Each image gets its own status, as Custom Vision reports it:
a corrupt or oversized file is refused alone and the batch answers 207 with the rest stored.
A file whose content the project already has is `OKDuplicate` with the stored image (and,
as on Azure, makes the batch not successful: 207).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db.models import Prefetch

from customvision.ids import Kind, parse_uuid_list
from customvision.training_shapes import UriOf, image_json
from customvision.training_wire import CvError, Reply, cv_error
from labeling.models import ImageTag, Project, Region, Tag
from labeling.services.ingest import FileRejected, IngestReport, ingest_images, inspect_header
from labeling.services.regions import add_regions, check_box_tag, normalize_box
from labeling.services.tagging import NegativeTagNotAlone, check_tag_rules
from project.errors import LoupeError

logger = logging.getLogger(__name__)

MAX_BATCH_IMAGES = 64  # Custom Vision's limit per call
MAX_TAGS_PER_IMAGE = 20
MAX_REGIONS_PER_IMAGE = 200
# A 64-image base64 batch is 4/3 of its images' bytes; the body is held in memory while it is
# decoded, so it is capped well below 64 x LOUPE_MAX_IMAGE_BYTES: clients send smaller batches.
MAX_BATCH_BODY_BYTES = 256 * 1024 * 1024

# ingest's rejection codes -> Custom Vision's per-image status.
_STATUSES = {
    "empty": "ErrorImageFormat",
    "not_an_image": "ErrorImageFormat",
    "unsupported_format": "ErrorImageFormat",
    "corrupt": "ErrorImageFormat",
    "too_large": "ErrorImageSize",
    "too_many_pixels": "ErrorImageDimensions",
    "storage_error": "ErrorStorage",
}
# Only "OK" counts as success: Azure answers a batch with an OKDuplicate image
# isBatchSuccessful false (and 207), and scripts written against it expect that.
SUCCESS = ("OK",)

BoxSpec = tuple[int, float, float, float, float]  # tag id, left, top, width, height


@dataclass
class Entry:
    """One image of a batch on its way through the pipeline."""

    source: str  # its name (files, multipart) or URL: the result's `sourceUrl`
    name: str = ""  # the file name the image keeps, when `source` is not one (a URL)
    data: bytes | None = None  # None when it failed before ingest (`status` says how)
    tag_ids: list[int] = field(default_factory=list)
    boxes: list[BoxSpec] = field(default_factory=list)
    status: str = ""
    image_id: int | None = None


def batch_limit() -> int:
    return min(MAX_BATCH_BODY_BYTES, MAX_BATCH_IMAGES * settings.LOUPE_MAX_IMAGE_BYTES * 2)


def check_batch_size(count: int) -> None:
    if count == 0:
        raise cv_error("BadRequestImageBatch", "The batch holds no image.")
    if count > MAX_BATCH_IMAGES:
        raise cv_error(
            "BadRequestExceededBatchSize",
            f"A batch takes at most {MAX_BATCH_IMAGES} images; this one has {count}.",
        )


def refuse_metadata(metadata: object) -> None:
    """Image metadata (Custom Vision v3.4) has nowhere to live in Loupe: refused, not dropped."""
    if metadata:
        raise cv_error("BadRequestNotSupported", "Image metadata is not supported by this server.")


def decode_base64(text: object) -> bytes | None:
    """The bytes of a base64 `contents` field (standard alphabet, padded); None if it is not."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def entry_labels(
    raw: dict[str, Any], index: int, batch_tag_ids: Sequence[int]
) -> tuple[list[int], list[BoxSpec]]:
    """An entry's tag ids (the batch's first, then its own) and boxes, as Loupe ids."""
    where = f"images[{index}]"
    own = parse_uuid_list(
        raw.get("tagIds"), Kind.TAG, field=f"{where}.tagIds", max_count=MAX_TAGS_PER_IMAGE
    )
    tag_ids = list(dict.fromkeys([*batch_tag_ids, *own]))
    regions = raw.get("regions") or []
    if not isinstance(regions, list):
        raise cv_error("BadRequestImageRegions", f"“{where}.regions” must be a list.")
    if len(regions) > MAX_REGIONS_PER_IMAGE:
        raise cv_error(
            "BadRequestImageRegions",
            f"{where} has {len(regions)} regions; an image takes at most {MAX_REGIONS_PER_IMAGE}.",
        )
    return tag_ids, [_box(region, f"{where}.regions[{n}]") for n, region in enumerate(regions)]


def _box(region: object, where: str) -> BoxSpec:
    if not isinstance(region, dict):
        raise cv_error("BadRequestImageRegions", f"“{where}” must be a JSON object.")
    [tag_id] = parse_uuid_list([region.get("tagId")], Kind.TAG, field=f"{where}.tagId", max_count=1)
    values = []
    for key in ("left", "top", "width", "height"):
        value = region.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise cv_error("BadRequestImageRegions", f"“{where}.{key}” must be a number.")
        values.append(float(value))
    return (tag_id, values[0], values[1], values[2], values[3])


# --- The pipeline ------------------------------------------------------------------------------


def create_images(
    *, project: Project, entries: list[Entry], by: AbstractBaseUser, uri_of: UriOf
) -> Reply | dict[str, Any]:
    """Check the entries' labels, store the images, draw the boxes; the ImageCreateSummary."""
    tags = _tags_of(project, entries)
    for index, entry in enumerate(entries):
        _check_labels(project, entry, index, tags)
    groups: dict[tuple[int, ...], list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.data is not None:
            groups[tuple(entry.tag_ids)].append(entry)
    for tag_ids, group in groups.items():
        files = [ContentFile(entry.data or b"", name=entry.name or entry.source) for entry in group]
        report = ingest_images(project=project, files=files, by=by, tag_ids=tag_ids)
        _record(group, report)
    _draw_boxes(project, entries, tags, by)
    return summary(project, entries, uri_of)


def _tags_of(project: Project, entries: Sequence[Entry]) -> dict[int, Tag]:
    wanted = {tag_id for entry in entries for tag_id in entry.tag_ids}
    wanted |= {box[0] for entry in entries for box in entry.boxes}
    return {tag.pk: tag for tag in project.tags.filter(pk__in=wanted)}


def _check_labels(project: Project, entry: Entry, index: int, tags: dict[int, Tag]) -> None:
    """Refuse the request (400) for an entry whose labels the project cannot take."""
    where = f"images[{index}]"
    unknown = [t for t in [*entry.tag_ids, *(box[0] for box in entry.boxes)] if t not in tags]
    if unknown:
        raise cv_error("BadRequestImageTags", f"{where} names a tag that is not in this project.")
    try:
        if entry.tag_ids:
            check_tag_rules(project, [tags[t] for t in entry.tag_ids])
        if entry.boxes and not project.is_detection:
            raise cv_error(
                "BadRequestImageRegions",
                f"{where} has regions, but only object detection projects have regions.",
            )
        for number, box in enumerate(entry.boxes):
            check_box_tag(project, tags[box[0]], label=f"{where}.regions[{number}]")
        _check_boxes(entry, where)
    except LoupeError as err:
        if isinstance(err, CvError):
            raise
        code = "BadRequestImageRegions" if entry.boxes else "BadRequestImageTags"
        if isinstance(err, NegativeTagNotAlone) and not entry.boxes:
            code = "BadRequestNegativeAndRegularTagOnSameImage"
        raise cv_error(code, f"{where}: {err.message}") from None


def _check_boxes(entry: Entry, where: str) -> None:
    """Each box against the image's own size (its header only), before the image is stored."""
    if not entry.boxes or entry.data is None:
        return
    try:
        inspection = inspect_header(entry.data)
    except FileRejected:
        return  # ingest refuses the file itself, with its own status
    for number, (_, left, top, width, height) in enumerate(entry.boxes):
        normalize_box(
            left,
            top,
            width,
            height,
            width_px=inspection.width,
            height_px=inspection.height,
            label=f"{where}.regions[{number}]",
        )


def _record(group: Sequence[Entry], report: IngestReport) -> None:
    for accepted in report.accepted:
        entry = group[accepted.index]
        entry.status, entry.image_id = "OK", accepted.image_id
    for rejected in report.rejected:
        entry = group[rejected.index]
        if rejected.code == "duplicate" and rejected.image_id is not None:
            entry.status, entry.image_id = "OKDuplicate", rejected.image_id
        elif rejected.code == "duplicate" and rejected.same_as is not None:
            # A second copy of a file that was itself refused (rejections come in index
            # order, so the first copy's status is known): the same verdict.
            entry.status = group[rejected.same_as].status or "ErrorUnknown"
        else:
            entry.status = _STATUSES.get(rejected.code, "ErrorUnknown")


def _draw_boxes(
    project: Project, entries: Sequence[Entry], tags: dict[int, Tag], by: AbstractBaseUser
) -> None:
    stored = [e for e in entries if e.status == "OK" and e.boxes and e.image_id is not None]
    if not stored:
        return
    images = {i.pk: i for i in project.images.filter(pk__in=[e.image_id for e in stored])}
    for image in images.values():
        image.project = project
    specs = [
        (images[entry.image_id], (tags[t], left, top, width, height))  # type: ignore[index]
        for entry in stored
        for (t, left, top, width, height) in entry.boxes
    ]
    report = add_regions(entries=specs, by=by)
    for rejected in report.rejected:  # checked above: only a race (a tag deleted meanwhile)
        logger.warning("A region of an uploaded image was refused: %s", rejected.message)


def summary(project: Project, entries: Sequence[Entry], uri_of: UriOf) -> Reply | dict[str, Any]:
    """The ImageCreateSummary; 207 when any image was refused."""
    ids = [entry.image_id for entry in entries if entry.image_id is not None]
    images = {image.pk: image for image in with_labels(project.images.filter(pk__in=ids))}
    results = []
    for entry in entries:
        image = images.get(entry.image_id) if entry.image_id is not None else None
        results.append(
            {
                "sourceUrl": entry.source,
                "status": entry.status or "ErrorUnknown",
                "image": image_json(image, uri_of) if image is not None else None,
            }
        )
    successful = all(result["status"] in SUCCESS for result in results)
    body = {"isBatchSuccessful": successful, "images": results}
    return body if successful else Reply(207, body)


def with_labels(images: Any) -> Any:
    """`images` with what `image_json` reads prefetched (two queries for any number)."""
    return images.prefetch_related(
        Prefetch("image_tags", queryset=ImageTag.objects.select_related("tag").order_by("id")),
        Prefetch("regions", queryset=Region.objects.select_related("tag").order_by("id")),
    )


def failed(source: str, status: str) -> Entry:
    return Entry(source=source, status=status)
