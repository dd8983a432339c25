"""YOLO txt: `classes.txt` (one tag name per line), `images/<name>`, `labels/<stem>.txt`.

Each label line is `class_index center_x center_y width height`, all but the index fractions
of the image. A label file belongs to the image with the same stem, in the same folder or in the
`labels/` folder mirroring `images/`. Images without a label file are imported without boxes;
a label file without its image is a problem. Export writes a (possibly empty) label file for
every image.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

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
    format_number,
)

CLASS_FILES = ("classes.txt", "obj.names")


def parse(archive: SafeArchive) -> ParsedDataset:
    problems: list[Problem] = []
    class_path = next((p for p in archive.paths if posixpath.basename(p) in CLASS_FILES), None)
    if class_path is None:
        return ParsedDataset(
            [],
            [],
            [
                Problem(
                    "archive",
                    "no_annotations",
                    "The archive has no classes.txt (one tag name per line).",
                )
            ],
        )
    try:
        names = [line.strip() for line in archive.read(class_path).decode().splitlines()]
    except ArchiveError as err:
        return ParsedDataset([], [], [Problem(class_path, err.code, err.message)])
    except UnicodeDecodeError:
        return ParsedDataset(
            [], [], [Problem(class_path, "malformed", f"“{class_path}” is not UTF-8 text.")]
        )
    while names and not names[-1]:
        names.pop()
    if not names or not all(names) or len(set(names)) != len(names):
        return ParsedDataset(
            [],
            [],
            [
                Problem(
                    class_path,
                    "malformed",
                    f"“{class_path}” must list distinct, non-empty tag names, one a line.",
                )
            ],
        )
    images = {posixpath.splitext(p)[0]: p for p in archive.image_paths()}
    items = {stem: DatasetItem(path=path) for stem, path in images.items()}
    for label_path in archive.with_suffix(".txt"):
        if label_path == class_path:
            continue
        stem = posixpath.splitext(label_path)[0]
        item = items.get(stem) or items.get(_image_stem(stem))
        if item is None:
            problems.append(
                Problem(
                    label_path, "missing_image", f"“{label_path}” has no image with the same name."
                )
            )
            continue
        item.annotated = True
        try:
            item.boxes = _boxes(archive.read(label_path), names, label_path)
        except ArchiveError as err:
            problems.append(Problem(label_path, err.code, err.message))
        except ValueError as err:
            problems.append(Problem(label_path, "malformed", str(err)))
    return ParsedDataset(list(items.values()), names, problems)


def _image_stem(label_stem: str) -> str:
    """`labels/a/b` → `images/a/b`: the image folder a label folder mirrors."""
    parts = label_stem.split("/")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            return "/".join([*parts[:i], "images", *parts[i + 1 :]])
    return label_stem


def _boxes(data: bytes, names: Sequence[str], path: str) -> list[BoxItem]:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"“{path}” is not UTF-8 text.") from None
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(
                f"Line {number} of “{path}” needs 5 values (class, center x, "
                f"center y, width, height); it has {len(fields)}."
            )
        try:
            index = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise ValueError(
                f"Line {number} of “{path}” has a value that is not a number."
            ) from None
        if not 0 <= index < len(names):
            raise ValueError(
                f"Line {number} of “{path}” names class {index}; classes.txt lists {len(names)}."
            )
        boxes.append(BoxItem(names[index], cx - w / 2, cy - h / 2, w, h))
    return boxes


def render(items: Sequence[ExportItem], tag_names: Sequence[str]) -> list[Entry]:
    index = {name: i for i, name in enumerate(tag_names)}
    entries: list[Entry] = [("classes.txt", "".join(f"{n}\n" for n in tag_names).encode())]
    for item in items:
        lines = []
        for box in item.boxes:
            values = (box.left + box.width / 2, box.top + box.height / 2, box.width, box.height)
            lines.append(" ".join([str(index[box.tag]), *(format_number(v, 9) for v in values)]))
        stem = posixpath.splitext(item.name)[0]
        entries.append((f"labels/{stem}.txt", "".join(f"{line}\n" for line in lines).encode()))
        entries.append((f"images/{item.name}", item))
    return entries


FORMAT = DatasetFormat(
    name="yolo", label="YOLO txt (boxes)", is_detection=True, parse=parse, render=render
)
