"""Phase 1 of an import: everything that can be checked without writing (file types, tag names,
boxes against the declared image size, members that cannot be decompressed).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from labeling.formats.common import (
    IMAGE_EXTENSIONS,
    MEMBER_READ_ERRORS,
    ArchiveError,
    DatasetItem,
    Problem,
    SafeArchive,
)
from labeling.models import Project, Tag
from labeling.services.datasets.common import (
    ProgressCallback,
)
from labeling.services.regions import normalize_box
from project.errors import LoupeError

_READ_CHUNK_BYTES = 1024 * 1024


def check_items(
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
            elif not tag.isprintable():
                # A NUL or control character: PostgreSQL refuses a NUL in text outright.
                shown = "".join(char if char.isprintable() else "?" for char in tag)
                problems.append(
                    Problem(
                        item.path,
                        "invalid",
                        f"The tag name “{shown}” holds a control character (shown as ?).",
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
