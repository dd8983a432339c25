"""The snapshot an iteration trains on: its tags, its images with their labels, and its hash.

Shared by both kinds of project (training.services.checks for classification,
training.services.detection_checks for detection), so neither imports the other's rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SnapshotTag:
    tag_id: int
    name: str
    image_count: int


@dataclass(frozen=True)
class SnapshotImage:
    image_id: int
    sha256: str
    file_name: str
    original_name: str
    labels: tuple[int, ...]  # indexes into Snapshot.tags
    is_negative: bool
    # Detection only: (tag index, left, top, width, height), fractions of the image.
    boxes: tuple[tuple[int, float, float, float, float], ...] = ()


@dataclass(frozen=True)
class Snapshot:
    tags: list[SnapshotTag]
    images: list[SnapshotImage]
    hash: str = field(default="")


def snapshot_hash(tags: list[SnapshotTag], images: list[SnapshotImage]) -> str:
    """sha256 over what the model learns from, for the "nothing changed" refusal."""
    # Content hashes and tag names, not row ids: re-uploading the same pictures with the same
    # labels is "nothing changed", renaming a tag is a change (the model reports names).
    digest = hashlib.sha256()
    names = [tag.name for tag in tags]
    for image in sorted(images, key=lambda i: i.sha256):
        labels = ",".join(sorted(names[i] for i in image.labels))
        line = f"{image.sha256}:{labels}:{int(image.is_negative)}"
        if image.boxes:  # detection: moving a box by a pixel is a change too
            line += ":" + ";".join(
                sorted(
                    f"{names[b[0]]}@{b[1]:.6f},{b[2]:.6f},{b[3]:.6f},{b[4]:.6f}"
                    for b in image.boxes
                )
            )
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()
