"""The health check's input (HealthData), its result (RuleResult), the thresholds (each a product
decision, explained in the package docstring) and the wording helpers every rule uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..duplicates import DUPLICATE_SIMILARITY

PASS, WARN, FAIL = "pass", "warn", "fail"

MIN_IMAGES = 5
MIN_BOXES = 15
RECOMMENDED = 50
BALANCE = 0.5
MIN_EDGE_PX = 256
MAX_ASPECT = 25.0
TINY_AREA = 0.001
TINY_SIDE_PX = 8
HUGE_AREA = 0.95
BIAS_MIN_BOXES = 10
BIAS_GRID = 3
# Sides of an image relative to a training split (`HealthData.side`): -2 = not in the split.
NOT_IN_SPLIT = -2


@dataclass(frozen=True)
class TagInfo:
    tag_id: int
    name: str
    is_negative: bool = False


@dataclass(frozen=True)
class HealthData:
    """A project's training images as arrays. Rows are images; labels and boxes point at rows.

    image_ids (N,) int; widths/heights (N,) int px (after EXIF orientation).
    label_rows/label_tags (L,): image tags (classification; detection: the Negative tag only).
    box_rows/box_tags (B,), boxes (B, 4) left, top, width, height as fractions of the image.
    embeddings (M, D) for rows `embedded_rows` (M,): images without a stored embedding are
    simply not checked for copies.
    side (N,) the image's side of the latest iteration's split (a fold number; -1 held out, -3
    trained on, for a single hold-out split; NOT_IN_SPLIT) or None without an iteration.
    """

    kind: str  # "multiclass", "multilabel" or "detection"
    tags: Sequence[TagInfo]
    image_ids: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    label_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    label_tags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    box_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    box_tags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    embeddings: np.ndarray | None = None
    embedded_rows: np.ndarray | None = None
    side: np.ndarray | None = None
    iteration_name: str = ""
    duplicate_similarity: float = DUPLICATE_SIMILARITY


@dataclass(frozen=True)
class RuleResult:
    key: str  # stable, kebab-case: the gallery link's `?health=<key>`
    title: str
    status: str  # PASS, WARN or FAIL
    message: str  # full sentences, safe to show
    image_ids: tuple[int, ...] = ()


def name_list(text: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(text[:limit])
    return shown + (f" and {len(text) - limit} more" if len(text) > limit else "")


def plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}{'es' if word.endswith('x') else 's'}"


def ids(data: HealthData, rows: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in data.image_ids[np.unique(rows)].tolist())
