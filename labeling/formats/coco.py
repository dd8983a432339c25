"""COCO object detection JSON: images, categories, annotations with bbox [x, y, w, h] in pixels.

Import reads the archive's one JSON file (`annotations.json` wins if there are several);
`file_name` is looked up relative to the JSON file, then the archive root, then by file name.
Segmentation, crowd flags and other keys are ignored. Export writes `annotations.json` and the
images under `images/`, with ids numbered in file-name order so two exports of the same labels
are byte-identical.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Sequence
from typing import Any

from labeling.formats.common import (
    ArchiveError,
    BoxItem,
    DatasetFormat,
    DatasetItem,
    Entry,
    ExportItem,
    ParsedDataset,
    Problem,
    SafeArchive,
    one_annotation_file,
    pixels,
)

ANNOTATION_FILE = "annotations.json"
# The largest image side an annotation file may declare: far above any camera (a 50-megapixel
# limit allows 50,000,000 x 1 in theory, but no dataset has it), and small enough that every
# pixel value below converts to a float exactly. A 400-digit width used to crash the worker.
MAX_SIDE_PX = 1_000_000


def parse(archive: SafeArchive) -> ParsedDataset:
    path, problems = one_annotation_file(
        archive, ".json", (ANNOTATION_FILE, "_annotations.coco.json"), "COCO JSON"
    )
    if path is None:
        return ParsedDataset([], [], problems)
    try:
        document = json.loads(archive.read(path))
    except ArchiveError as err:
        return ParsedDataset([], [], [Problem(path, err.code, err.message)])
    except (ValueError, UnicodeDecodeError) as err:
        return ParsedDataset(
            [], [], [Problem(path, "malformed", f"“{path}” is not valid JSON: {err}.")]
        )
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), list) for key in ("images", "categories")
    ):
        return ParsedDataset(
            [],
            [],
            [
                Problem(
                    path,
                    "malformed",
                    f"“{path}” needs “images” and “categories” lists (COCO format).",
                )
            ],
        )
    categories = _categories(document["categories"], problems)
    items = _images(archive, document["images"], posixpath.dirname(path), problems)
    _annotations(document.get("annotations", []), items, categories, problems)
    return ParsedDataset(list(items.values()), list(categories.values()), problems)


def _categories(raw: list[Any], problems: list[Problem]) -> dict[int, str]:
    categories: dict[int, str] = {}
    for number, category in enumerate(raw, start=1):
        cid, name = _get(category, "id"), _get(category, "name")
        if not _is_int(cid) or not isinstance(name, str) or not name.strip():
            problems.append(
                Problem(
                    f"category {number}",
                    "malformed",
                    f"Category {number} needs an integer “id” and a “name”.",
                )
            )
        elif cid in categories:
            problems.append(
                Problem(f"category {number}", "malformed", f"Category id {cid} is listed twice.")
            )
        else:
            categories[cid] = name.strip()
    return categories


def _images(
    archive: SafeArchive, raw: list[Any], base_dir: str, problems: list[Problem]
) -> dict[int, DatasetItem]:
    items: dict[int, DatasetItem] = {}
    for number, image in enumerate(raw, start=1):
        iid, file_name = _get(image, "id"), _get(image, "file_name")
        width, height = _get(image, "width"), _get(image, "height")
        label = f"image {iid}" if _is_int(iid) else f"image entry {number}"
        if not _is_int(iid) or not isinstance(file_name, str) or not file_name:
            problems.append(
                Problem(
                    label,
                    "malformed",
                    f"Image entry {number} needs an integer “id” and a “file_name”.",
                )
            )
            continue
        if not (_is_side(width) and _is_side(height)):
            problems.append(
                Problem(
                    file_name,
                    "malformed",
                    f"“{file_name}” needs a positive integer “width” and “height” "
                    f"(at most {MAX_SIDE_PX} pixels).",
                )
            )
            continue
        if iid in items:
            problems.append(Problem(file_name, "malformed", f"Image id {iid} is listed twice."))
            continue
        member = archive.resolve(file_name, base_dir)
        if member is None:
            problems.append(
                Problem(
                    file_name, "missing_image", f"“{file_name}” is listed but not in the archive."
                )
            )
            continue
        items[iid] = DatasetItem(path=member, width_px=width, height_px=height, annotated=True)
    return items


def _annotations(
    raw: Any, items: dict[int, DatasetItem], categories: dict[int, str], problems: list[Problem]
) -> None:
    if not isinstance(raw, list):
        problems.append(Problem("annotations", "malformed", "“annotations” must be a list."))
        return
    for number, annotation in enumerate(raw, start=1):
        annotation_id = _get(annotation, "id")
        label = f"annotation {annotation_id if _is_int(annotation_id) else number}"
        image_id, category_id = _get(annotation, "image_id"), _get(annotation, "category_id")
        bbox = _get(annotation, "bbox")
        coordinates = _finite_floats(bbox)
        if coordinates is None:
            problems.append(
                Problem(
                    label,
                    "malformed",
                    f"The {label} needs a “bbox” of four numbers [x, y, width, height].",
                )
            )
            continue
        item = items.get(image_id) if _is_int(image_id) else None
        if item is None:
            problems.append(
                Problem(
                    label,
                    "missing_image",
                    f"The {label} names image {_short(image_id)}, which is not among the "
                    "listed images.",
                )
            )
            continue
        # An id that is a list or an object is unhashable: check the type before the lookup.
        if not _is_int(category_id) or category_id not in categories:
            problems.append(
                Problem(
                    label,
                    "malformed",
                    f"The {label} names category {_short(category_id)}, which is not listed.",
                )
            )
            continue
        x, y, w, h = coordinates
        width_px, height_px = item.width_px or 1, item.height_px or 1  # set for listed images
        item.boxes.append(
            BoxItem(
                categories[category_id], x / width_px, y / height_px, w / width_px, h / height_px
            )
        )


def render(items: Sequence[ExportItem], tag_names: Sequence[str]) -> list[Entry]:
    category_ids = {name: number for number, name in enumerate(tag_names, start=1)}
    images, annotations = [], []
    for image_id, item in enumerate(items, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": f"images/{item.name}",
                "width": item.width_px,
                "height": item.height_px,
            }
        )
        for box in item.boxes:
            x, y = pixels(box.left * item.width_px, 6), pixels(box.top * item.height_px, 6)
            w, h = pixels(box.width * item.width_px, 6), pixels(box.height * item.height_px, 6)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[box.tag],
                    "bbox": [x, y, w, h],
                    "area": pixels(w * h, 6),
                    "iscrowd": 0,
                }
            )
    document = {
        "info": {"description": "Exported from Loupe"},
        "images": images,
        "categories": [
            {"id": cid, "name": name, "supercategory": "none"} for name, cid in category_ids.items()
        ],
        "annotations": annotations,
    }
    entries: list[Entry] = [(ANNOTATION_FILE, json.dumps(document, indent=1).encode())]
    entries += [(f"images/{item.name}", item) for item in items]
    return entries


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_side(value: Any) -> bool:
    return _is_int(value) and 0 < value <= MAX_SIDE_PX


def _finite_floats(values: Any) -> tuple[float, float, float, float] | None:
    """[x, y, w, h] as four finite floats, or None (wrong shape, not numbers, too large)."""
    if not (isinstance(values, list) and len(values) == 4 and all(map(_is_number, values))):
        return None
    try:
        x, y, w, h = (float(v) for v in values)  # OverflowError: an integer of 400 digits
    except OverflowError:
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None
    return x, y, w, h


def _short(value: Any) -> str:
    """A value from the file, cut short for a message."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


FORMAT = DatasetFormat(
    name="coco",
    label="COCO JSON (boxes)",
    is_detection=True,
    parse=parse,
    render=render,
    names_images=True,
)
