"""Pascal VOC XML: one `Annotations/<stem>.xml` per image, images under `JPEGImages/`.

Coordinates are pixel edges with the origin at the image's top-left corner (xmin, ymin, xmax,
ymax), written with up to six decimals, so a box comes back within 1e-6 of the image. XML is
parsed with defusedxml with DTDs, entities and external references forbidden: an uploaded file
must not read the server's files (XXE) or expand itself into gigabytes.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Sequence
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

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

ANNOTATION_DIR = "Annotations"
IMAGE_DIR = "JPEGImages"


class _Malformed(Exception):
    pass


def parse(archive: SafeArchive) -> ParsedDataset:
    xml_paths = archive.with_suffix(".xml")
    if not xml_paths:
        return ParsedDataset(
            [],
            [],
            [
                Problem(
                    "archive", "no_annotations", "The archive has no Pascal VOC XML files (*.xml)."
                )
            ],
        )
    items: list[DatasetItem] = []
    tag_names: dict[str, None] = {}
    problems: list[Problem] = []
    for path in xml_paths:
        try:
            item = _parse_one(archive, path)
        except _Malformed as err:
            problems.append(Problem(path, "malformed", str(err)))
            continue
        except ArchiveError as err:
            problems.append(Problem(path, err.code, err.message))
            continue
        if item is None:
            problems.append(
                Problem(
                    path,
                    "missing_image",
                    f"“{path}” describes an image that is not in the archive.",
                )
            )
            continue
        tag_names.update(dict.fromkeys(box.tag for box in item.boxes))
        items.append(item)
    return ParsedDataset(items, list(tag_names), problems)


def _parse_one(archive: SafeArchive, path: str) -> DatasetItem | None:
    try:
        root = fromstring(
            archive.read(path), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException:
        raise _Malformed(f"“{path}” uses DTDs or entities, which are not allowed.") from None
    except ElementTree.ParseError as err:
        raise _Malformed(f"“{path}” is not well-formed XML: {err}.") from None
    if root.tag != "annotation":
        raise _Malformed(f"“{path}” is not a Pascal VOC annotation (no <annotation> root).")
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise _Malformed(f"“{path}” has no <filename>.")
    width, height = _int(root, "size/width", path), _int(root, "size/height", path)
    base = posixpath.dirname(path)
    member = archive.resolve(posixpath.join("..", IMAGE_DIR, filename), base) or archive.resolve(
        filename, base
    )
    if member is None:
        return None
    item = DatasetItem(path=member, width_px=width, height_px=height, annotated=True)
    for number, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise _Malformed(f"Object {number} in “{path}” has no <name>.")
        xmin, ymin = _float(obj, "bndbox/xmin", path), _float(obj, "bndbox/ymin", path)
        xmax, ymax = _float(obj, "bndbox/xmax", path), _float(obj, "bndbox/ymax", path)
        item.boxes.append(
            BoxItem(
                name, xmin / width, ymin / height, (xmax - xmin) / width, (ymax - ymin) / height
            )
        )
    return item


def _int(root: ElementTree.Element, where: str, path: str) -> int:
    value = _float(root, where, path)
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise _Malformed(f"<{where}> in “{path}” must be a positive whole number.")
    return int(value)


def _float(root: ElementTree.Element, where: str, path: str) -> float:
    text = root.findtext(where)
    try:
        return float((text or "").strip())
    except ValueError:
        raise _Malformed(f"<{where}> in “{path}” must be a number.") from None


def render(items: Sequence[ExportItem], tag_names: Sequence[str]) -> list[Entry]:
    entries: list[Entry] = []
    for item in items:
        root = ElementTree.Element("annotation")
        _sub(root, "folder", IMAGE_DIR)
        _sub(root, "filename", item.name)
        size = _sub(root, "size")
        _sub(size, "width", str(item.width_px))
        _sub(size, "height", str(item.height_px))
        _sub(size, "depth", "3")
        for box in item.boxes:
            obj = _sub(root, "object")
            _sub(obj, "name", box.tag)
            _sub(obj, "pose", "Unspecified")
            _sub(obj, "truncated", "0")
            _sub(obj, "difficult", "0")
            bndbox = _sub(obj, "bndbox")
            for key, value in (
                ("xmin", box.left * item.width_px),
                ("ymin", box.top * item.height_px),
                ("xmax", (box.left + box.width) * item.width_px),
                ("ymax", (box.top + box.height) * item.height_px),
            ):
                _sub(bndbox, key, format_number(value, 6))
        ElementTree.indent(root)
        stem = posixpath.splitext(item.name)[0]
        entries.append(
            (
                f"{ANNOTATION_DIR}/{stem}.xml",
                ElementTree.tostring(root, encoding="utf-8", xml_declaration=True),
            )
        )
        entries.append((f"{IMAGE_DIR}/{item.name}", item))
    return entries


def _sub(parent: ElementTree.Element, tag: str, text: str | None = None) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


FORMAT = DatasetFormat(
    name="voc",
    label="Pascal VOC XML (boxes)",
    is_detection=True,
    parse=parse,
    render=render,
    names_images=True,
)
