"""Dataset import: a project's images and labels from a zip archive.

Import is all or nothing, and says item by item what stopped it:
1. read (phase 1, nothing written): unsafe archive members (`../`, absolute, symlinks), the
   annotation file, images it names that are missing, boxes outside the declared image size,
   members that cannot be decompressed; any problem ends the import here;
2. write (phase 2, one transaction): tags the project lacks are created, images go through the
   same ingest as uploads (`ingest_images`: type by content, size, pixel bombs, duplicates) and
   labels through the same services as the editors (`set_image_regions`, `set_image_tags`);
   any problem (a rejected image, a size that differs from the annotation file, a box under
   1 px) rolls the transaction back and removes every file stored so far.

Labels only (`import_labels`): an annotation file (COCO, VOC, CSV) whose images are in the
project already, matched by file name (Image.original_name) among its training images. A
problem in the file itself stops it as above; an image the file names that the project lacks,
or has twice, is skipped and reported item by item, and the rest are labeled (their boxes or
tags replaced by the file's). Images the file does not name keep their labels.

A Loupe export's manifest (`loupe.json`, see `common`) adds what the formats cannot say: tags
with no image, which tag is Negative, and the detection images marked "No objects".
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction

from labeling.access import require_role
from labeling.formats.common import (
    IMAGE_EXTENSIONS,
    MEMBER_READ_ERRORS,
    ArchiveError,
    DatasetItem,
    LabelsOnlyArchive,
    Problem,
    SafeArchive,
)
from labeling.models import Image, Project, Role, Tag
from labeling.services.datasets.common import (
    Manifest,
    ProgressCallback,
    dataset_format,
    read_manifest,
)
from labeling.services.ingest import ingest_images
from labeling.services.projects import create_tag
from labeling.services.regions import normalize_box, set_image_regions
from labeling.services.tagging import set_image_tags
from project.errors import LoupeError, ValidationFailed

logger = logging.getLogger(__name__)

# Images go through ingest in batches of this many: progress moves between batches, and memory
# holds one batch's candidates at most.
INGEST_BATCH = 50
_READ_CHUNK_BYTES = 1024 * 1024


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


class _RollBack(Exception):
    pass


def import_dataset(
    *,
    project: Project,
    archive: IO[bytes],
    format_name: str,
    by: AbstractBaseUser,
    on_progress: ProgressCallback = lambda fraction, message: None,
) -> ImportReport:
    """Import a zip of images and annotations into the project, completely or not at all.

    Raises LoupeError for what stops the import as a whole (role, format, not a zip); returns
    an ImportReport whose `problems` list every item that stopped it otherwise.
    """
    require_role(by, project, Role.ADMIN)  # it may create tags, which only admins do
    fmt = dataset_format(project, format_name)
    report = ImportReport(format=fmt.name)
    on_progress(0.0, "Reading the archive.")
    safe = SafeArchive(archive)
    try:
        parsed = fmt.parse(safe)
        manifest, manifest_problems = read_manifest(safe)
        report.problems = [*safe.problems, *parsed.problems, *manifest_problems]
        report.problems += _check_items(project, safe, parsed.items, on_progress)
        if manifest is not None:
            report.problems += _apply_manifest(project, manifest, parsed.items)
        elif project.is_detection:
            _mark_no_objects(parsed.items)
        if report.problems:
            return report
        manifest = manifest or Manifest()
        tag_names = [*manifest.tags, *parsed.tag_names]
        _write(project, safe, parsed.items, tag_names, by, report, on_progress, manifest)
    finally:
        safe.close()
    on_progress(1.0, "Imported." if report.ok else "Nothing was imported.")
    return report


def _apply_manifest(
    project: Project, manifest: Manifest, items: Sequence[DatasetItem]
) -> list[Problem]:
    """Mark the detection items the manifest lists as "No objects"; a listed image that has
    boxes contradicts it."""
    if not project.is_detection or not manifest.negative_images:
        return []
    problems = []
    for item in items:
        if item.name in manifest.negative_images:
            if item.boxes:
                problems.append(
                    Problem(
                        item.path,
                        "malformed",
                        f"“{item.name}” has boxes, but the manifest marks it “No objects”.",
                    )
                )
            item.negative = True
    return problems


def _mark_no_objects(items: Sequence[DatasetItem]) -> None:
    """An image the annotation file lists without a box is a negative ("No objects"), so it
    trains the detector on background instead of staying out as untagged. (A Loupe export's
    manifest says which images are negatives; then only those are.)"""
    for item in items:
        if item.annotated and not item.boxes:
            item.negative = True


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
        report.problems += _check_items(project, safe, parsed.items, on_progress, read=False)
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
            tags = _ensure_tags(project, tag_names, items, by, report)
            for number, (item, image) in enumerate(matched, start=1):
                if all(name in tags for name in (*item.tags, *(b.tag for b in item.boxes))):
                    _label(item, image, tags, by, report, replace=True)
                if number % INGEST_BATCH == 0:
                    on_progress(0.1 + 0.9 * number / len(matched), f"Labeled {number} images.")
            report.images = len(matched)
            if report.problems:
                raise _RollBack
    except _RollBack:
        report.images = report.boxes = report.labeled_images = 0
        report.tags_created = []


def _check_items(
    project: Project,
    archive: SafeArchive,
    items: Sequence[DatasetItem],
    on_progress: ProgressCallback,
    *,
    read: bool = True,
) -> list[Problem]:
    """Phase 1: everything that can be checked without writing (`read`: the image members
    too; labels only has none)."""
    problems: list[Problem] = []
    for number, item in enumerate(items, start=1):
        if posixpath.splitext(item.path)[1].lower() not in IMAGE_EXTENSIONS:
            problems.append(
                Problem(
                    item.path,
                    "not_an_image",
                    f"“{item.path}” does not have "
                    "an image file extension (JPEG, PNG, BMP, WebP or GIF).",
                )
            )
            continue
        for tag in {*item.tags, *(box.tag for box in item.boxes)}:
            if len(tag) > Tag._meta.get_field("name").max_length:
                problems.append(
                    Problem(
                        item.path,
                        "invalid",
                        f"The tag name “{tag[:40]}…” is longer than 100 characters.",
                    )
                )
        if item.width_px and item.height_px:
            problems += _box_problems(item, item.width_px, item.height_px)
        try:
            if read:
                _read_through(archive, item.path)
        except ArchiveError as err:
            problems.append(Problem(item.path, err.code, err.message))
        if number % 20 == 0:
            on_progress(0.1 * number / len(items), "Checking the archive.")
    return problems


def _read_through(archive: SafeArchive, path: str) -> None:
    """Decompress a member without keeping it: a bad CRC or an encrypted entry fails here,
    before anything is stored, instead of halfway through phase 2."""
    try:
        with archive.open(path) as member:
            while member.read(_READ_CHUNK_BYTES):
                pass
    except MEMBER_READ_ERRORS as err:
        raise ArchiveError(f"“{path}” cannot be read from the archive ({err}).") from None


def _box_problems(item: DatasetItem, width_px: int, height_px: int) -> list[Problem]:
    problems = []
    for number, box in enumerate(item.boxes, start=1):
        try:
            normalize_box(
                box.left,
                box.top,
                box.width,
                box.height,
                width_px=width_px,
                height_px=height_px,
                label=f"Box {number} ({box.tag}) of “{item.name}”",
            )
        except LoupeError as err:
            problems.append(
                Problem(
                    item.path, "box_outside" if "outside" in err.message else err.code, err.message
                )
            )
    return problems


def _write(
    project: Project,
    archive: SafeArchive,
    items: Sequence[DatasetItem],
    tag_names: Sequence[str],
    by: AbstractBaseUser,
    report: ImportReport,
    on_progress: ProgressCallback,
    manifest: Manifest,
) -> None:
    """Phase 2: one transaction; any problem rolls it back and removes the stored files."""
    stored: list[str] = []
    try:
        with transaction.atomic():
            tags = _ensure_tags(
                project, tag_names, items, by, report, negative=manifest.negative_tag
            )
            for start in range(0, len(items), INGEST_BATCH):
                batch = items[start : start + INGEST_BATCH]
                stored_batch = _ingest(project, archive, batch, by, report)
                stored += [
                    name
                    for _, image in stored_batch
                    for name in (image.file.name, image.thumbnail.name)
                    if name
                ]
                for item, image in stored_batch:
                    if all(name in tags for name in (*item.tags, *(b.tag for b in item.boxes))):
                        _label(item, image, tags, by, report)
                done = min(len(items), start + INGEST_BATCH)
                on_progress(
                    0.1 + 0.9 * done / len(items), f"Imported {done} of {len(items)} images."
                )
            if report.problems:
                raise _RollBack
    except _RollBack:
        report.images = report.boxes = report.labeled_images = 0
        report.tags_created = []
        _delete_files(stored)
    except BaseException:
        _delete_files(stored)
        raise


def _ensure_tags(
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


class _ArchiveFile:
    """An archive member as ingest reads it: name, size, read() and seek(0)."""

    def __init__(self, archive: SafeArchive, path: str) -> None:
        self.name = posixpath.basename(path)
        self.size = archive.size(path)
        self._archive, self._path = archive, path
        self._stream: IO[bytes] | None = None

    def read(self, size: int = -1) -> bytes:
        if self._stream is None:
            self._stream = self._archive.open(self._path)
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise ValueError("An archive member can only be read again from the start.")
        self.close()
        return 0

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _ingest(
    project: Project,
    archive: SafeArchive,
    batch: Sequence[DatasetItem],
    by: AbstractBaseUser,
    report: ImportReport,
) -> list[tuple[DatasetItem, Image]]:
    """Store a batch of images through the upload checks; returns the stored ones."""
    files = [_ArchiveFile(archive, item.path) for item in batch]
    try:
        result = ingest_images(project=project, files=files, by=by, source=Image.Source.IMPORT)
    finally:
        for file in files:
            file.close()
    for rejected in result.rejected:
        report.problems.append(Problem(batch[rejected.index].path, rejected.code, rejected.message))
    rows = Image.objects.in_bulk([accepted.image_id for accepted in result.accepted])
    stored = []
    for accepted in result.accepted:
        image = rows[accepted.image_id]
        image.project = project  # shares the role cache: no query per label write
        stored.append((batch[accepted.index], image))
    report.images += len(stored)
    return stored


def _label(
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


def _delete_files(names: Sequence[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not remove %s after a failed import", name, exc_info=True)
