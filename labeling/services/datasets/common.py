"""What dataset import and export share: the format lookup and Loupe's manifest.

The manifest (`loupe.json` at the archive root) is what the foreign formats cannot say: every
tag of the project in order (COCO lists its categories, but VOC, YOLO's classes.txt, folders and
CSV only name the tags in use), which tag is the Negative one, and which detection images were
marked "No objects" (in COCO, VOC and YOLO an image without boxes is just that; Loupe tells an
unreviewed image from a reviewed empty one). Other tools ignore the file; an archive without it
imports as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from labeling.formats import FORMATS, DatasetFormat
from labeling.formats.common import ArchiveError, Problem, SafeArchive
from labeling.models import Project
from project.errors import LabelRuleError, ValidationFailed

ProgressCallback = Callable[[float, str], None]

MANIFEST_FILE = "loupe.json"
MANIFEST_VERSION = 1


def dataset_format(project: Project, name: str) -> DatasetFormat:
    """The format called `name`, if it fits the project's kind."""
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ValidationFailed(f"Unknown dataset format “{name}”.")
    if fmt.is_detection != project.is_detection:
        what = "object detection" if project.is_detection else "classification"
        raise LabelRuleError(f"{fmt.label} does not fit a {what} project.")
    return fmt


def formats_for(project: Project) -> list[DatasetFormat]:
    return [f for f in FORMATS.values() if f.is_detection == project.is_detection]


@dataclass(frozen=True)
class Manifest:
    tags: Sequence[str] = ()  # every tag of the exported project, in its order
    negative_tag: str | None = None
    negative_images: frozenset[str] = field(default_factory=frozenset)  # file names


def render_manifest(*, project: Project, format_name: str, manifest: Manifest) -> bytes:
    """The manifest's bytes; no timestamp, so two exports of the same labels are identical."""
    document = {
        "loupe_manifest": MANIFEST_VERSION,
        "kind": project.kind,
        "format": format_name,
        "tags": list(manifest.tags),
        "negative_tag": manifest.negative_tag,
        "negative_images": sorted(manifest.negative_images),
    }
    return json.dumps(document, indent=1, ensure_ascii=False).encode()


def read_manifest(archive: SafeArchive) -> tuple[Manifest | None, list[Problem]]:
    """The archive's manifest, None if it has none, or a problem if it is unreadable."""
    if MANIFEST_FILE not in archive.paths:
        return None, []
    try:
        document = json.loads(archive.read(MANIFEST_FILE))
    except ArchiveError as err:
        return None, [Problem(MANIFEST_FILE, err.code, err.message)]
    except (ValueError, UnicodeDecodeError):
        return None, [Problem(MANIFEST_FILE, "malformed", f"“{MANIFEST_FILE}” is not valid JSON.")]
    if not isinstance(document, dict) or "loupe_manifest" not in document:
        return None, []  # someone else's loupe.json: not ours to read
    tags, negative = document.get("tags", []), document.get("negative_tag")
    images = document.get("negative_images", [])
    if not (
        _strings(tags) and _strings(images) and (negative is None or isinstance(negative, str))
    ):
        return None, [
            Problem(
                MANIFEST_FILE,
                "malformed",
                f"“{MANIFEST_FILE}” needs “tags” and “negative_images” lists of names and a "
                "“negative_tag” name or null.",
            )
        ]
    return Manifest(tags=tags, negative_tag=negative, negative_images=frozenset(images)), []


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
