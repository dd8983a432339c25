"""Detection labels: the boxes (Region rows) of one image, replaced as a whole.

The rules, in one place for the box editor, the dataset import and the API:
- only detection projects carry boxes, and only with the project's regular tags;
- a box is stored in Custom Vision's convention: left, top, width, height as fractions of the
  image's width and height, top-left origin;
- a box that reaches outside the image is refused, except for float overshoot under half a pixel
  at an edge (an editor's or another tool's rounding), which is clipped to the image;
- a box under 1 px wide or high in the image's own pixels is refused: it cannot be seen, drawn
  again or trained on;
- edits are compare-and-set on `Image.version`, so two annotators never overwrite each other
  silently: the second gets EditConflict and reloads;
- "No objects": a reviewer looked and found nothing to box. It is stored as the project's
  Negative tag on the image (an ImageTag; the tag is created on first use), only on an image
  without boxes; drawing a box removes it. An image with boxes or the mark is labeled (and
  training data); an image with neither is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F

from labeling.access import require_image_role
from labeling.models import Image, ImageTag, Project, Region, Tag
from project.errors import EditConflict, LabelRuleError, LoupeError, NotFound, ValidationFailed

# How far (in the image's pixels) a box may overshoot an edge and still be clipped rather than
# refused: rounding in editors and exporters stays well under half a pixel.
EDGE_TOLERANCE_PX = 0.5
MIN_BOX_PX = 1.0


@dataclass(frozen=True)
class Box:
    """A box in normalized coordinates (fractions of the image's width and height)."""

    left: float
    top: float
    width: float
    height: float


RegionSpec = tuple[Tag, float, float, float, float]


def normalize_box(
    left: float,
    top: float,
    width: float,
    height: float,
    *,
    width_px: int,
    height_px: int,
    label: str = "This box",
) -> Box:
    """The box clipped to the image, or ValidationFailed if it is outside it or under 1 px.

    `label` names the box in the message ("Box 2", "Annotation 17 of cat.jpg").
    """
    values = (left, top, width, height)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise ValidationFailed(f"{label} has a coordinate that is not a finite number.")
    if width_px < 1 or height_px < 1:
        raise ValidationFailed(f"{label} belongs to an image with no pixels.")
    tol_x, tol_y = EDGE_TOLERANCE_PX / width_px, EDGE_TOLERANCE_PX / height_px
    right, bottom = left + width, top + height
    if width < 0 or height < 0:
        raise ValidationFailed(f"{label} has a negative width or height.")
    if left < -tol_x or top < -tol_y or right > 1 + tol_x or bottom > 1 + tol_y:
        raise ValidationFailed(f"{label} reaches outside the image ({width_px}x{height_px} px).")
    # Recompute a side only when it was clipped, so stored fractions are exactly what was sent.
    if left < 0 or right > 1:
        left = max(0.0, left)
        width = min(1.0, right) - left
    if top < 0 or bottom > 1:
        top = max(0.0, top)
        height = min(1.0, bottom) - top
    box = Box(left=float(left), top=float(top), width=float(width), height=float(height))
    if box.width * width_px < MIN_BOX_PX or box.height * height_px < MIN_BOX_PX:
        raise ValidationFailed(f"{label} is smaller than 1 pixel; draw it larger.")
    return box


def check_box_tag(project: Project, tag: Tag, *, label: str = "This box") -> None:
    """Raise unless `tag` may label a box in `project`."""
    if tag.project_id != project.pk:
        raise NotFound("That tag does not belong to this project.")
    if tag.kind != Tag.Kind.REGULAR:
        raise LabelRuleError(f"{label} has the Negative tag; boxes take a regular tag.")


@transaction.atomic
def set_image_regions(
    *,
    image: Image,
    regions: Sequence[RegionSpec],
    by: AbstractBaseUser,
    version: int | None,
    no_objects: bool | None = None,
) -> Image:
    """Replace the image's boxes with exactly `regions` (an empty list removes them all).

    Each region is (tag, left, top, width, height) in fractions of the image. `version` is the
    image version the editor saw; None skips the conflict check (import and bulk callers).
    `no_objects` True marks an image without boxes "No objects", False clears the mark, None
    keeps it; any box clears it. Returns the image with its new version and `is_tagged`.
    """
    project = image.project
    _check_editable(image, by)
    if no_objects and regions:
        raise LabelRuleError(
            "An image with boxes has objects: delete its boxes before marking it “No objects”."
        )
    rows = [
        _checked_region(image, spec, by=by, label=f"Box {number}")
        for number, spec in enumerate(regions, start=1)
    ]
    _bump_version(image, version)
    Region.objects.filter(image=image).delete()
    Region.objects.bulk_create(rows)
    marks = ImageTag.objects.filter(image=image, tag__kind=Tag.Kind.NEGATIVE)
    if rows or no_objects is False:
        marks.delete()
    elif no_objects:
        ImageTag.objects.get_or_create(
            image=image, tag=ensure_negative_tag(project), defaults={"created_by": by}
        )
    Image.objects.filter(pk=image.pk).update(is_tagged=bool(rows) or marks.exists())
    image.refresh_from_db(fields=["version", "is_tagged"])
    return image


def _checked_region(image: Image, spec: RegionSpec, *, by: AbstractBaseUser, label: str) -> Region:
    """An unsaved Region of `image` from (tag, left, top, width, height), by the rules above."""
    tag, left, top, width, height = spec
    check_box_tag(image.project, tag, label=label)
    box = normalize_box(
        left, top, width, height, width_px=image.width, height_px=image.height, label=label
    )
    return Region(
        image=image,
        tag=tag,
        left=box.left,
        top=box.top,
        width=box.width,
        height=box.height,
        created_by=by,
    )


def _check_editable(image: Image, by: AbstractBaseUser) -> None:
    require_image_role(by, image)
    if not image.project.is_detection:
        raise LabelRuleError("Only object detection projects have boxes; tag this image instead.")


def _after_box_change(image: Image) -> None:
    """A box drawn clears "No objects"; the image is labeled while it has a box or the mark."""
    has_boxes = Region.objects.filter(image=image).exists()
    marks = ImageTag.objects.filter(image=image, tag__kind=Tag.Kind.NEGATIVE)
    if has_boxes:
        marks.delete()
    Image.objects.filter(pk=image.pk).update(is_tagged=has_boxes or marks.exists())
    image.refresh_from_db(fields=["version", "is_tagged"])


# --- One box at a time (the REST API, Custom Vision's create/delete image regions) ------------
# The same rules as `set_image_regions`, but existing boxes keep their ids: a client that
# created a box deletes or edits it later by the id it was given.


@dataclass(frozen=True)
class RejectedRegion:
    index: int  # position in the request, from 0
    code: str
    message: str


@dataclass(frozen=True)
class RegionBatchReport:
    created: list[Region]
    rejected: list[RejectedRegion]


def add_regions(
    *, entries: Sequence[tuple[Image, RegionSpec]], by: AbstractBaseUser
) -> RegionBatchReport:
    """Add boxes to images (each entry: an image and its new box), keeping the boxes there.

    Each entry is checked and written on its own (its image's version goes up by one), so one
    refused box (outside its image, a Negative tag, a classification project, a stored
    prediction below reviewer) is reported by its index and the others still land.
    """
    created: list[Region] = []
    rejected: list[RejectedRegion] = []
    for index, (image, spec) in enumerate(entries):
        try:
            with transaction.atomic():
                _check_editable(image, by)
                region = _checked_region(image, spec, by=by, label=f"Region {index + 1}")
                _bump_version(image, None)
                region.save()
                _after_box_change(image)
        except LoupeError as err:
            rejected.append(RejectedRegion(index, err.code, err.message))
        else:
            created.append(region)
    return RegionBatchReport(created=created, rejected=rejected)


@transaction.atomic
def update_region(
    *, region: Region, spec: RegionSpec, by: AbstractBaseUser, version: int | None = None
) -> Region:
    """Move, resize or retag one box; `version` as in `set_image_regions`."""
    image = region.image
    _check_editable(image, by)
    checked = _checked_region(image, spec, by=by, label="This box")
    _bump_version(image, version)
    Region.objects.filter(pk=region.pk).update(
        tag=checked.tag,
        left=checked.left,
        top=checked.top,
        width=checked.width,
        height=checked.height,
    )
    region.refresh_from_db()
    image.refresh_from_db(fields=["version", "is_tagged"])
    return region


@transaction.atomic
def delete_region(*, region: Region, by: AbstractBaseUser, version: int | None = None) -> Image:
    """Delete one box; the image stays labeled while another box (or "No objects") remains."""
    image = region.image
    _check_editable(image, by)
    _bump_version(image, version)
    Region.objects.filter(pk=region.pk).delete()
    _after_box_change(image)
    return image


def is_marked_no_objects(image: Image) -> bool:
    """True when a reviewer marked this detection image "No objects"."""
    return ImageTag.objects.filter(image=image, tag__kind=Tag.Kind.NEGATIVE).exists()


def ensure_negative_tag(project: Project) -> Tag:
    """The project's Negative tag, created on first use of "No objects".

    Annotators may mark images although only admins create tags: this tag is part of the
    product (like Custom Vision's), not a label someone chose, and a project has at most one.
    """
    existing = project.tags.filter(kind=Tag.Kind.NEGATIVE).first()
    if existing is not None:
        return existing
    taken = {name.lower() for name in project.tags.values_list("name", flat=True)}
    # "Negative" unless a regular tag already has that name (tag names are unique per project).
    candidates = ["Negative", "No objects", *(f"Negative {n}" for n in range(2, len(taken) + 3))]
    name = next(n for n in candidates if n.lower() not in taken)
    try:
        with transaction.atomic():
            return Tag.objects.create(project=project, name=name, kind=Tag.Kind.NEGATIVE)
    except IntegrityError:  # another annotator created it at the same moment
        return project.tags.get(kind=Tag.Kind.NEGATIVE)


def _bump_version(image: Image, version: int | None) -> None:
    """Compare-and-set: claim the next version, or fail if someone else got there first."""
    rows = Image.objects.filter(pk=image.pk)
    if version is not None:
        rows = rows.filter(version=version)
    if not rows.update(version=F("version") + 1):
        raise EditConflict(
            "Someone else changed this image's boxes while you were looking. "
            "Reload to see their change."
        )
