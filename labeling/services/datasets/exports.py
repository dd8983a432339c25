"""Dataset export: a project's training images and labels as a zip, in one of `labeling.formats`.

Invariant: memory does not grow with the images. The labels are read as plain tuples (no model
rows), each image is copied from the default storage into the archive in 1 MB chunks, member by
member, and the archive goes to a file the caller gives (the export job's temporary file), so
20,000 images export in the memory of one image's chunk plus the annotation files.

Everything the project has is kept: images without labels, detection images without boxes and
those marked "No objects", tags no image carries yet (all through the manifest, see `common`).
Export → import into a new project gives the same images, tags, boxes and negatives; export →
import → export gives the same archive, byte for byte (fixed member dates, names, order).
"""

from __future__ import annotations

import posixpath
import shutil
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db.models import Exists, OuterRef

from labeling.access import require_role
from labeling.formats.common import IMAGE_EXTENSIONS, BoxItem, ExportItem, unique_names
from labeling.models import ImageQuerySet, ImageTag, Project, Region, Role, Tag
from labeling.services.datasets.common import (
    MANIFEST_FILE,
    Manifest,
    ProgressCallback,
    dataset_format,
    render_manifest,
)
from labeling.services.images import ImageFilter
from labeling.services.ingest import SUPPORTED_FORMATS
from project.errors import LoupeError, ValidationFailed

# Fixed timestamps make two exports of the same labels byte-identical.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_COPY_CHUNK_BYTES = 1024 * 1024
_FILE_MODE = 0o644 << 16


class MissingImageFile(LoupeError):
    code = "missing_file"
    http_status = 409


@dataclass(frozen=True)
class ExportSelection:
    """Which training images an export holds: those of any of `tag_ids` (none: every image),
    within the gallery filter `status` ("all", "tagged", "untagged" or an app's filter)."""

    tag_ids: tuple[int, ...] = ()
    status: str = "all"


@dataclass(frozen=True)
class ExportReport:
    images: int
    members: int  # files in the archive (folders writes a multilabel image once per tag)


def check_selection(project: Project, selection: ExportSelection) -> None:
    """ValidationFailed for a tag of another project or an unknown gallery filter."""
    if selection.status not in ImageFilter.statuses():
        raise ValidationFailed(f"Unknown gallery filter “{selection.status}”.")
    known = set(project.tags.filter(pk__in=selection.tag_ids).values_list("pk", flat=True))
    unknown = sorted(set(selection.tag_ids) - known)
    if unknown:
        raise ValidationFailed(
            f"This project has no tag with id {', '.join(str(pk) for pk in unknown[:5])}."
        )


def selected_images(project: Project, selection: ExportSelection) -> ImageQuerySet:
    images = ImageFilter(status=selection.status).apply(project.images.all())
    if selection.tag_ids:
        tag_ids = list(selection.tag_ids)
        images = images.filter(
            Exists(ImageTag.objects.filter(image=OuterRef("pk"), tag_id__in=tag_ids))
            | Exists(Region.objects.filter(image=OuterRef("pk"), tag_id__in=tag_ids))
        )
    return images


def export_dataset(
    *,
    project: Project,
    format_name: str,
    by: AbstractBaseUser,
    out: IO[bytes],
    selection: ExportSelection = ExportSelection(),
    on_progress: ProgressCallback = lambda fraction, message: None,
) -> ExportReport:
    """Write the selected training images and their labels as a zip to `out` (seekable).

    Raises MissingImageFile if an image's file is gone from storage (the archive is then
    incomplete and the caller discards it).
    """
    require_role(by, project, Role.REVIEWER)
    fmt = dataset_format(project, format_name)
    check_selection(project, selection)
    on_progress(0.0, "Reading the labels.")
    items, manifest = _export_items(project, selected_images(project, selection))
    tags = project.tags.all()
    if project.is_detection:
        tags = tags.filter(kind=Tag.Kind.REGULAR)
    entries = fmt.render(items, [tag.name for tag in tags])
    total = sum(isinstance(content, ExportItem) for _, content in entries)
    written = 0
    with zipfile.ZipFile(out, "w", allowZip64=True) as zf:
        for path, content in entries:
            if isinstance(content, ExportItem):
                _copy_image(zf, path, content)
                written += 1
                on_progress(0.02 + 0.98 * written / total, f"Wrote {written} of {total} images.")
            else:
                zf.writestr(_info(path), content, compress_type=zipfile.ZIP_DEFLATED)
        manifest_bytes = render_manifest(project=project, format_name=fmt.name, manifest=manifest)
        zf.writestr(_info(MANIFEST_FILE), manifest_bytes, compress_type=zipfile.ZIP_DEFLATED)
    on_progress(1.0, f"Exported {len(items)} images.")
    return ExportReport(images=len(items), members=total)


def _info(path: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, _ZIP_DATE)
    info.external_attr = _FILE_MODE
    return info


def _copy_image(zf: zipfile.ZipFile, path: str, item: ExportItem) -> None:
    info = _info(path)
    info.compress_type = zipfile.ZIP_STORED  # images are compressed already
    try:
        source = item.open()
    except (FileNotFoundError, OSError) as err:
        raise MissingImageFile(
            f"The file of “{item.name}” is missing from storage ({err}); delete the image "
            "or upload it again, then export again."
        ) from None
    with source, zf.open(info, "w") as target:
        shutil.copyfileobj(source, target, _COPY_CHUNK_BYTES)


def _export_items(project: Project, images: ImageQuerySet) -> tuple[list[ExportItem], Manifest]:
    """The selected images as export items sorted by name, from three flat queries."""
    rows = list(
        images.order_by("pk").values_list(
            "pk", "original_name", "format", "width", "height", "file"
        )
    )
    selected = images.values("pk")
    image_tags: dict[int, list[str]] = defaultdict(list)
    negatives: set[int] = set()
    for image_id, name, kind in (
        ImageTag.objects.filter(image__in=selected)
        .order_by("tag_id")
        .values_list("image_id", "tag__name", "tag__kind")
    ):
        image_tags[image_id].append(name)
        if kind == Tag.Kind.NEGATIVE:
            negatives.add(image_id)
    boxes: dict[int, list[BoxItem]] = defaultdict(list)
    for image_id, *box in (
        Region.objects.filter(image__in=selected)
        .order_by("pk")
        .values_list("image_id", "tag__name", "left", "top", "width", "height")
    ):
        boxes[image_id].append(BoxItem(*box))
    names = unique_names([_file_name(row[1], row[2], row[0]) for row in rows], [r[0] for r in rows])
    detection = project.is_detection
    items = [
        ExportItem(
            name=name,
            width_px=width,
            height_px=height,
            tags=tuple(image_tags.get(pk, ())),
            boxes=tuple(boxes.get(pk, ())),
            open=_opener(file_name),
            negative=detection and pk in negatives and not boxes.get(pk),
        )
        for (pk, _, _, width, height, file_name), name in zip(rows, names, strict=True)
    ]
    items.sort(key=lambda item: item.name)
    all_tags = list(project.tags.values_list("name", "kind"))
    manifest = Manifest(
        tags=[name for name, _ in all_tags],
        negative_tag=next((name for name, kind in all_tags if kind == Tag.Kind.NEGATIVE), None),
        negative_images=frozenset(item.name for item in items if item.negative),
    )
    return items, manifest


def _opener(file_name: str) -> Callable[[], IO[bytes]]:
    return lambda: default_storage.open(file_name, "rb")


def _file_name(original_name: str, image_format: str, pk: int) -> str:
    """The image's original name, with the extension of its actual format if it lacks one."""
    name = original_name or f"image-{pk}"
    if posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
        name += "." + SUPPORTED_FORMATS.get(image_format.upper(), "png")
    return name
