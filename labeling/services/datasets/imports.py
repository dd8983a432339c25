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

Labels only (`import_labels`, onto images the project has): `labels_only`. Phase 1's checks are in
`import_checks`, what both write with (report, tags, labels) in `import_writes`.

A Loupe export's manifest (`loupe.json`, see `common`) adds what the formats cannot say: tags
with no image, which tag is Negative, and the detection images marked "No objects".
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from typing import IO

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction

from labeling.access import require_role
from labeling.formats.common import (
    DatasetItem,
    Problem,
    SafeArchive,
)
from labeling.models import Image, Project, Role
from labeling.services.datasets.common import (
    Manifest,
    ProgressCallback,
    dataset_format,
    read_manifest,
)
from labeling.services.datasets.import_checks import check_items
from labeling.services.datasets.import_writes import (
    INGEST_BATCH,
    ImportReport,
    RollBack,
    ensure_tags,
    label_image,
)
from labeling.services.ingest import ingest_images

logger = logging.getLogger(__name__)


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
        report.problems += check_items(project, safe, parsed.items, on_progress)
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
            tags = ensure_tags(
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
                        label_image(item, image, tags, by, report)
                done = min(len(items), start + INGEST_BATCH)
                on_progress(
                    0.1 + 0.9 * done / len(items), f"Imported {done} of {len(items)} images."
                )
            if report.problems:
                raise RollBack
    except RollBack:
        report.images = report.boxes = report.labeled_images = 0
        report.tags_created = []
        _delete_files(stored)
    except BaseException:
        _delete_files(stored)
        raise


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


def _delete_files(names: Sequence[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not remove %s after a failed import", name, exc_info=True)
