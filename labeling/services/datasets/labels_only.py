"""Labels only (`import_labels`): an annotation file (COCO, VOC, CSV) whose images are in the
project already, matched by file name (Image.original_name) among its training images. A
problem in the file itself stops it as a full import's would; an image the file names that the
project lacks, or has twice, is skipped and reported item by item, and the rest are labeled
(their boxes or tags replaced by the file's). Images the file does not name keep their labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from labeling.access import require_role
from labeling.formats.common import (
    DatasetItem,
    LabelsOnlyArchive,
    Problem,
)
from labeling.models import Image, Project, Role
from labeling.services.datasets.common import (
    ProgressCallback,
    dataset_format,
)
from labeling.services.datasets.import_checks import check_items
from labeling.services.datasets.import_writes import (
    INGEST_BATCH,
    ImportReport,
    RollBack,
    ensure_tags,
    label_image,
)
from project.errors import ValidationFailed


def import_labels(
    *,
    project: Project,
    archive: IO[bytes],
    format_name: str,
    by: AbstractBaseUser,
    on_progress: ProgressCallback = lambda fraction, message: None,
) -> ImportReport:
    """Label images already in the project from a zip of annotation files (no images).

    Same checks and same all-or-nothing write as `import_dataset` for the file's own problems;
    items whose image is missing or ambiguous go to `report.skipped`, one each.
    """
    require_role(by, project, Role.ADMIN)  # it may create tags, which only admins do
    fmt = dataset_format(project, format_name)
    if not fmt.names_images:
        raise ValidationFailed(
            f"{fmt.label} does not name each image file, so it cannot label images already "
            "in the project; import it in a zip with the images."
        )
    report = ImportReport(format=fmt.name)
    on_progress(0.0, "Reading the annotation file.")
    safe = LabelsOnlyArchive(archive)
    try:
        parsed = fmt.parse(safe)
        report.problems = [*safe.problems, *parsed.problems]
        report.problems += check_items(project, safe, parsed.items, on_progress, read=False)
    finally:
        safe.close()
    if report.problems:
        return report
    matched = _match_stored_images(project, parsed.items, report)
    _write_labels(project, matched, parsed.tag_names, by, report, on_progress)
    on_progress(1.0, "Imported." if report.ok else "Nothing was imported.")
    return report


def _match_stored_images(
    project: Project, items: Sequence[DatasetItem], report: ImportReport
) -> list[tuple[DatasetItem, Image]]:
    """Each item's training image by original name; the rest go to `report.skipped`."""
    names = {item.name for item in items}
    by_name: dict[str, list[Image]] = {}
    for image in project.images.training().filter(original_name__in=names).order_by("pk"):
        by_name.setdefault(image.original_name, []).append(image)
    listed: dict[str, int] = {}
    for item in items:
        listed[item.name] = listed.get(item.name, 0) + 1
    matched = []
    for item in items:
        found = by_name.get(item.name, [])
        if listed[item.name] > 1:
            report.skipped.append(
                Problem(
                    item.name,
                    "listed_twice",
                    f"The annotation file lists “{item.name}” {listed[item.name]} times; "
                    "none of them was applied.",
                )
            )
        elif not found:
            report.skipped.append(
                Problem(
                    item.name, "not_found", f"No training image of this project is “{item.name}”."
                )
            )
        elif len(found) > 1:
            ids = ", ".join(str(image.pk) for image in found[:5])
            report.skipped.append(
                Problem(
                    item.name,
                    "ambiguous_name",
                    f"{len(found)} images of this project are called “{item.name}” (ids {ids}); "
                    "rename all but one, or label them by hand.",
                )
            )
        else:
            image = found[0]
            image.project = project  # shares the role cache: no query per label write
            matched.append((item, image))
    return matched


def _write_labels(
    project: Project,
    matched: Sequence[tuple[DatasetItem, Image]],
    tag_names: Sequence[str],
    by: AbstractBaseUser,
    report: ImportReport,
    on_progress: ProgressCallback,
) -> None:
    """One transaction: tags, then each matched image's labels; any problem rolls it back."""
    items = [item for item, _ in matched]
    try:
        with transaction.atomic():
            tags = ensure_tags(project, tag_names, items, by, report)
            for number, (item, image) in enumerate(matched, start=1):
                if all(name in tags for name in (*item.tags, *(b.tag for b in item.boxes))):
                    label_image(item, image, tags, by, report, replace=True)
                if number % INGEST_BATCH == 0:
                    on_progress(0.1 + 0.9 * number / len(matched), f"Labeled {number} images.")
            report.images = len(matched)
            if report.problems:
                raise RollBack
    except RollBack:
        report.images = report.boxes = report.labeled_images = 0
        report.tags_created = []
