"""Training API: image tags and image regions (create in batches, delete).

Every write is labeling's: bulk tagging (`add_tags_to_images`, `remove_tags_from_images`) by
the project's rules, and boxes added or deleted one by one (`add_regions`, `delete_region`)
so the boxes already there keep their ids.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from customvision.ids import Kind, parse_uuid_list, to_uuid
from customvision.training_images import images_of, one_id, tag_ids_query
from customvision.training_projects import project_for
from customvision.training_shapes import region_json
from customvision.training_wire import NO_CONTENT, Reply, body_object, cv_error, query_text
from labeling.models import ImageTag, Project, Region, Role, Tag
from labeling.services.projects import get_tags
from labeling.services.regions import add_regions, delete_region
from labeling.services.tagging import add_tags_to_images, remove_tags_from_images
from project.errors import LoupeError, NotFound

User = AbstractBaseUser
MAX_IMAGE_TAGS = 128
MAX_REGION_BATCH = 64


# --- Image tags -----------------------------------------------------------------------------------


def _tags(project: Project, tag_ids: list[int]) -> dict[int, Tag]:
    try:
        return {tag.pk: tag for tag in get_tags(project, tag_ids)}
    except NotFound as err:
        raise cv_error("NotFoundTag", err.message) from None


def _require_images(user: User, project: Project, image_ids: list[int]) -> None:
    found = set(images_of(user, project).filter(pk__in=image_ids).values_list("pk", flat=True))
    missing = [pk for pk in image_ids if pk not in found]
    if missing:
        raise cv_error(
            "NotFoundImage", f"Image {to_uuid(Kind.IMAGE, missing[0])} is not in this project."
        )


def _pair_entries(body: dict[str, Any], key: str, limit: int) -> list[dict[str, Any]]:
    rows = body.get(key) or []
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise cv_error("BadRequest", f"“{key}” must be a list of JSON objects.")
    if len(rows) > limit:
        raise cv_error(
            "BadRequestExceededBatchSize",
            f"A batch takes at most {limit} {key}; this one has {len(rows)}.",
        )
    return rows


def create_image_tags(request: HttpRequest, user: User, project_id: int) -> dict[str, Any]:
    """`{"tags": [{"imageId", "tagId"}]}`: each pair added by the bulk tagging service, by the
    project's rules (in a multiclass project a new tag replaces the image's old one)."""
    project = project_for(user, project_id)
    rows = _pair_entries(body_object(request), "tags", MAX_IMAGE_TAGS)
    pairs = [
        (
            one_id(r.get("imageId"), Kind.IMAGE, "imageId"),
            one_id(r.get("tagId"), Kind.TAG, "tagId"),
        )
        for r in rows
    ]
    _require_images(user, project, [image_id for image_id, _ in pairs])
    tags = _tags(project, [tag_id for _, tag_id in pairs])
    had = set(
        ImageTag.objects.filter(
            image_id__in=[i for i, _ in pairs], tag_id__in=list(tags)
        ).values_list("image_id", "tag_id")
    )
    by_tag: dict[int, list[int]] = defaultdict(list)
    for image_id, tag_id in dict.fromkeys(pairs):
        if (image_id, tag_id) not in had:
            by_tag[tag_id].append(image_id)
    try:
        for tag_id, image_ids in by_tag.items():
            add_tags_to_images(project=project, image_ids=image_ids, tags=[tags[tag_id]], by=user)
    except LoupeError as err:
        if err.code in ("not_found", "forbidden"):
            raise
        raise cv_error("BadRequestImageTags", err.message) from None

    def entry(image_id: int, tag_id: int) -> dict[str, str]:
        return {"imageId": to_uuid(Kind.IMAGE, image_id), "tagId": to_uuid(Kind.TAG, tag_id)}

    return {
        "created": [entry(i, t) for i, t in dict.fromkeys(pairs) if (i, t) not in had],
        "duplicated": [entry(i, t) for i, t in dict.fromkeys(pairs) if (i, t) in had],
        "exceeded": [],
    }


def delete_image_tags(request: HttpRequest, user: User, project_id: int) -> object:
    project = project_for(user, project_id)
    image_ids = parse_uuid_list(
        query_text(request, "imageIds"), Kind.IMAGE, field="imageIds", max_count=64
    )
    tag_ids = tag_ids_query(request)
    if not image_ids or not tag_ids:
        raise cv_error(
            "BadRequestRequiredParamIsNull", "Name the images (imageIds) and tags (tagIds)."
        )
    tags = _tags(project, tag_ids)
    remove_tags_from_images(project=project, image_ids=image_ids, tags=list(tags.values()), by=user)
    return NO_CONTENT


# --- Image regions --------------------------------------------------------------------------------

_BOX_KEYS = ("left", "top", "width", "height")


def _region_entry(row: dict[str, Any], index: int) -> tuple[int, int, tuple[float, ...]]:
    values = []
    for key in _BOX_KEYS:
        value = row.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise cv_error("BadRequestImageRegions", f"“regions[{index}].{key}” must be a number.")
        values.append(float(value))
    image_id = one_id(row.get("imageId"), Kind.IMAGE, f"regions[{index}].imageId")
    tag_id = one_id(row.get("tagId"), Kind.TAG, f"regions[{index}].tagId")
    return image_id, tag_id, tuple(values)


def create_image_regions(request: HttpRequest, user: User, project_id: int) -> Any:
    """`{"regions": [{"imageId", "tagId", "left", "top", "width", "height"}]}`: boxes added to
    images that keep their other boxes (labeling's `add_regions`). A box equal to one the image
    already has is reported in `duplicated`; a refused box leaves the batch 207, or 400 with its
    reason when no box landed."""
    project = project_for(user, project_id)
    rows = _pair_entries(body_object(request), "regions", MAX_REGION_BATCH)
    parsed = [_region_entry(row, index) for index, row in enumerate(rows)]
    images = {
        image.pk: image for image in images_of(user, project).filter(pk__in=[p[0] for p in parsed])
    }
    missing = [p[0] for p in parsed if p[0] not in images]
    if missing:
        raise cv_error(
            "NotFoundImage", f"Image {to_uuid(Kind.IMAGE, missing[0])} is not in this project."
        )
    tags = {tag.pk: tag for tag in project.tags.filter(pk__in=[p[1] for p in parsed])}
    if len(tags) != len({p[1] for p in parsed}):
        raise cv_error("NotFoundTag", "A region names a tag that is not in this project.")
    existing = defaultdict(list)
    for image_id, tag_id, *box in Region.objects.filter(image_id__in=list(images)).values_list(
        "image_id", "tag_id", *_BOX_KEYS
    ):
        existing[(image_id, tag_id)].append(box)
    fresh, duplicated = [], []
    for image_id, tag_id, box in parsed:
        if any(
            all(abs(a - b) < 1e-6 for a, b in zip(old, box, strict=True))
            for old in existing[(image_id, tag_id)]
        ):
            duplicated.append(_entry_json(image_id, tag_id, box))
        else:
            existing[(image_id, tag_id)].append(list(box))
            fresh.append((image_id, tag_id, box))
    for image in images.values():
        image.project = project
    report = add_regions(
        entries=[(images[i], (tags[t], *box)) for i, t, box in fresh],
        by=user,  # type: ignore[misc]
    )
    if report.rejected and not report.created:
        raise cv_error("BadRequestImageRegions", report.rejected[0].message)
    body = {
        "created": [_created_json(region) for region in report.created],
        "duplicated": duplicated,
        "exceeded": [],
    }
    return Reply(207, body) if report.rejected else body


def _entry_json(image_id: int, tag_id: int, box: tuple[float, ...]) -> dict[str, Any]:
    return {
        "imageId": to_uuid(Kind.IMAGE, image_id),
        "tagId": to_uuid(Kind.TAG, tag_id),
        **dict(zip(_BOX_KEYS, box, strict=True)),
    }


def _created_json(region: Region) -> dict[str, Any]:
    return {"imageId": to_uuid(Kind.IMAGE, region.image_id), **region_json(region)}


def delete_image_regions(request: HttpRequest, user: User, project_id: int) -> object:
    """Delete the listed boxes of the project; ids of no box here are skipped (deleting twice
    is harmless)."""
    project = project_for(user, project_id, Role.ANNOTATOR)
    ids = parse_uuid_list(
        query_text(request, "regionIds"), Kind.REGION, field="regionIds", max_count=64
    )
    if not ids:
        raise cv_error("BadRequestRequiredParamIsNull", "Name the regions to delete (regionIds).")
    regions = Region.objects.filter(pk__in=ids, image__project=project).select_related("image")
    for region in regions:
        region.image.project = project
        delete_region(region=region, by=user)
    return NO_CONTENT
