"""What both imports write with (`imports` and `labels_only`): the report, the tags an archive
names, and one image's labels through the editors' services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth.base_user import AbstractBaseUser

from labeling.formats.common import (
    DatasetItem,
    Problem,
)
from labeling.models import Image, Project, Tag
from labeling.services.projects import create_tag
from labeling.services.regions import set_image_regions
from labeling.services.tagging import set_image_tags
from project.errors import LoupeError

# Images go through ingest in batches of this many: progress moves between batches, and memory
# holds one batch's candidates at most.
INGEST_BATCH = 50


@dataclass
class ImportReport:
    format: str
    images: int = 0
    boxes: int = 0
    labeled_images: int = 0
    tags_created: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Labels only: items left out (image not in the project, or its name on several images).
    skipped: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "ok": self.ok,
            "images": self.images,
            "boxes": self.boxes,
            "labeled_images": self.labeled_images,
            "tags_created": self.tags_created,
            "problems": _problem_dicts(self.problems),
            "skipped": _problem_dicts(self.skipped),
        }


def _problem_dicts(problems: Sequence[Problem]) -> list[dict[str, str]]:
    return [{"item": p.item, "code": p.code, "message": p.message} for p in problems]


class RollBack(Exception):
    pass


def ensure_tags(
    project: Project,
    tag_names: Sequence[str],
    items: Sequence[DatasetItem],
    by: AbstractBaseUser,
    report: ImportReport,
    *,
    negative: str | None = None,
) -> dict[str, Tag]:
    """The project's tag for each name (case-insensitive), creating the missing ones in the
    annotation file's order, so category order and keys 1-9 survive a round trip.

    `negative` (from a manifest) names the exported project's Negative tag: it maps onto this
    project's Negative tag, whatever that is called, or is created as one."""
    names = list(
        dict.fromkeys(
            [
                *tag_names,
                *(t for i in items for t in i.tags),
                *(b.tag for i in items for b in i.boxes),
            ]
        )
    )
    existing = {tag.name.lower(): tag for tag in project.tags.all()}
    own_negative = next((tag for tag in existing.values() if tag.is_negative), None)
    tags: dict[str, Tag] = {}
    for name in names:
        is_negative = negative is not None and name.strip().lower() == negative.strip().lower()
        tag = (own_negative if is_negative else None) or existing.get(name.strip().lower())
        if tag is None:
            kind = Tag.Kind.NEGATIVE if is_negative else Tag.Kind.REGULAR
            try:
                tag = create_tag(project=project, name=name, by=by, kind=kind)
            except LoupeError as err:
                report.problems.append(Problem(f"tag {name}", err.code, err.message))
                continue
            existing[tag.name.lower()] = tag
            report.tags_created.append(tag.name)
        tags[name] = tag
    return tags


def label_image(
    item: DatasetItem,
    image: Image,
    tags: dict[str, Tag],
    by: AbstractBaseUser,
    report: ImportReport,
    *,
    replace: bool = False,
) -> None:
    """Give one stored image its labels through the editors' services (`replace`: an image
    that has labels already gets the file's, none included, instead of keeping its own)."""
    if item.width_px and (item.width_px, item.height_px) != (image.width, image.height):
        report.problems.append(
            Problem(
                item.path,
                "size_mismatch",
                f"“{item.name}” is "
                f"{image.width}x{image.height} px, but the annotation "
                f"file says {item.width_px}x{item.height_px} px.",
            )
        )
        return
    try:
        if image.project.is_detection:
            if item.boxes or item.negative or replace:
                regions = [(tags[b.tag], b.left, b.top, b.width, b.height) for b in item.boxes]
                set_image_regions(
                    image=image,
                    regions=regions,
                    by=by,
                    version=None,
                    no_objects=True if item.negative else None,
                )
        elif item.tags or replace:
            set_image_tags(
                image=image, tags=[tags[name] for name in item.tags], by=by, version=None
            )
    except LoupeError as err:
        report.problems.append(Problem(item.path, err.code, f"“{item.name}”: {err.message}"))
        return
    report.boxes += len(item.boxes)
    report.labeled_images += bool(item.boxes or item.tags or item.negative)
