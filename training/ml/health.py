"""Dataset health rules: what the cloud products advise (50 images a tag, a 1:2 balance, no
tiny images, no copies, no mislabels) checked on the data, one result per rule.

Pure logic over arrays (no Django): training.services.health reads the rows and embeddings,
calls `check_health`, and stores the results. Each result names the images that break the rule,
so the page links to the gallery showing exactly those.

Thresholds (each a product decision, written once here):
- images per tag: FAIL under 5 images (Custom Vision's floor, the Train button's own check), or
  under 15 boxes in a detection project; WARN under 50 (the advice);
- balance: WARN when the smallest tag has under half the largest tag's images (1:2);
- shortest edge under 256 px: WARN (the backbone sees 224 px; smaller is upscaled mush);
- aspect ratio over 25:1: WARN (a centre crop keeps a sliver);
- near-duplicates (training.ml.duplicates): WARN; copies with different labels: FAIL (one of
  them is wrong); copies on both sides of a training/validation split of the latest iteration:
  WARN (its figures are inflated);
- detection: images with no box and no Negative tag WARN (they train as background only when
  marked Negative); boxes under 0.1% of the image or 8 px a side WARN; boxes covering 95% of it
  WARN (image tagging fits better); a tag with 10+ boxes whose centres all sit in one cell of a
  3x3 grid WARN (the model may learn the place, not the object).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .duplicates import DUPLICATE_SIMILARITY, group_pairs, near_duplicate_pairs

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


def check_health(data: HealthData) -> list[RuleResult]:
    """Every rule that applies to the project's kind, in the page's order."""
    is_detection = data.kind == "detection"
    results = [_images_per_tag(data, is_detection)]
    results.append(_no_boxes(data) if is_detection else _untagged(data))
    results += [_balance(data, is_detection), _small(data), _aspect(data)]
    results += _duplicates(data, is_detection)
    if is_detection:
        results += [_tiny_boxes(data), _huge_boxes(data), _positional_bias(data)]
    return results


def _names(text: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(text[:limit])
    return shown + (f" and {len(text) - limit} more" if len(text) > limit else "")


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}{'es' if word.endswith('x') else 's'}"


def _ids(data: HealthData, rows: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in data.image_ids[np.unique(rows)].tolist())


def _tag_counts(data: HealthData, is_detection: bool) -> dict[int, int]:
    """Images per tag (classification, Negative included) or boxes per tag (detection, plus
    images carrying the Negative tag)."""
    counts: dict[int, int] = {}
    if is_detection and data.box_tags.size:
        tags, n = np.unique(data.box_tags, return_counts=True)
        counts.update(zip(tags.tolist(), n.tolist(), strict=True))
    if data.label_tags.size:
        pairs = np.unique(np.stack([data.label_rows, data.label_tags], axis=1), axis=0)
        tags, n = np.unique(pairs[:, 1], return_counts=True)
        counts.update(zip(tags.tolist(), n.tolist(), strict=True))
    return counts


def _rows_of_tags(data: HealthData, tag_ids: Sequence[int]) -> np.ndarray:
    wanted = np.asarray(list(tag_ids), dtype=np.int64)
    return np.concatenate(
        [
            data.label_rows[np.isin(data.label_tags, wanted)],
            data.box_rows[np.isin(data.box_tags, wanted)],
        ]
    ).astype(np.int64)


def _images_per_tag(data: HealthData, is_detection: bool) -> RuleResult:
    key, title = "images-per-tag", "Images per tag"
    counts = _tag_counts(data, is_detection)
    # A detection project's Negative tag marks "no objects" images: optional, not a class.
    used = [
        t for t in data.tags if counts.get(t.tag_id, 0) > 0 and not (is_detection and t.is_negative)
    ]
    if not used:
        return RuleResult(key, title, FAIL, "No image is labeled yet: tag images to train.")

    def floor(tag: TagInfo) -> int:
        return MIN_BOXES if is_detection and not tag.is_negative else MIN_IMAGES

    def unit(tag: TagInfo) -> str:
        return "box" if is_detection and not tag.is_negative else "image"

    failing = [t for t in used if counts[t.tag_id] < floor(t)]
    warning = [t for t in used if floor(t) <= counts[t.tag_id] < RECOMMENDED]
    described = [f"“{t.name}” ({_plural(counts[t.tag_id], unit(t))})" for t in failing + warning]
    if failing:
        message = (
            f"{_plural(len(failing), 'tag')} {'is' if len(failing) == 1 else 'are'} under the "
            f"minimum of {MIN_IMAGES} images"
            + (f" or {MIN_BOXES} boxes" if is_detection else "")
            + f": {_names(described[: len(failing)])}. Training cannot learn "
            f"{'it' if len(failing) == 1 else 'them'} from so few; {RECOMMENDED} are recommended."
        )
        return RuleResult(
            key, title, FAIL, message, _ids(data, _rows_of_tags(data, [t.tag_id for t in failing]))
        )
    if warning:
        message = (
            f"{_names(described)} {'has' if len(warning) == 1 else 'have'} fewer than the "
            f"recommended {RECOMMENDED}; more examples make a steadier model."
        )
        return RuleResult(
            key, title, WARN, message, _ids(data, _rows_of_tags(data, [t.tag_id for t in warning]))
        )
    what = "boxes" if is_detection else "images"
    return RuleResult(key, title, PASS, f"Every tag has at least {RECOMMENDED} {what}.")


def _unlabeled_rows(data: HealthData) -> np.ndarray:
    labeled = np.zeros(len(data.image_ids), dtype=bool)
    labeled[data.label_rows] = True
    labeled[data.box_rows] = True
    result: np.ndarray = np.flatnonzero(~labeled)
    return result


def _untagged(data: HealthData) -> RuleResult:
    rows = _unlabeled_rows(data)
    if not rows.size:
        return RuleResult("untagged", "Untagged images", PASS, "Every image is tagged.")
    return RuleResult(
        "untagged",
        "Untagged images",
        WARN,
        f"{_plural(rows.size, 'image')} {'has' if rows.size == 1 else 'have'} no tag and will "
        "be left out of training.",
        _ids(data, rows),
    )


def _no_boxes(data: HealthData) -> RuleResult:
    key, title = "no-boxes", "Images without boxes"
    rows = _unlabeled_rows(data)  # the Negative tag is a label row: those are excluded
    if not rows.size:
        return RuleResult(key, title, PASS, "Every image has boxes or is marked Negative.")
    return RuleResult(
        key,
        title,
        WARN,
        f"{_plural(rows.size, 'image')} {'has' if rows.size == 1 else 'have'} no box and no "
        "Negative tag: box the objects, or mark an image with none as Negative so it trains "
        "as background.",
        _ids(data, rows),
    )


def _balance(data: HealthData, is_detection: bool) -> RuleResult:
    key, title = "balance", "Balance between tags"
    counts = _tag_counts(data, is_detection)
    regular = [t for t in data.tags if not t.is_negative and counts.get(t.tag_id, 0) > 0]
    if len(regular) < 2:
        return RuleResult(key, title, PASS, "Fewer than two tags are used: nothing to balance.")
    largest = max(regular, key=lambda t: counts[t.tag_id])
    smallest = min(regular, key=lambda t: counts[t.tag_id])
    big, small = counts[largest.tag_id], counts[smallest.tag_id]
    what = "boxes" if is_detection else "images"
    if small >= BALANCE * big:
        return RuleResult(
            key, title, PASS, f"The smallest tag has at least half the largest tag's {what}."
        )
    needed = math.ceil(BALANCE * big) - small
    behind = [t for t in regular if counts[t.tag_id] < BALANCE * big]
    ratio = big / max(small, 1)
    others = (
        f" {_plural(len(behind) - 1, 'other tag')} {'is' if len(behind) == 2 else 'are'} "
        "under half too."
        if len(behind) > 1
        else ""
    )
    message = (
        f"“{smallest.name}” has {small} {what} and “{largest.name}” {big} (1:{ratio:.1f}); "
        f"{needed} more {what} of “{smallest.name}” would bring it to 1:2.{others} A model "
        "trained on this leans towards the larger tags."
    )
    rows = _rows_of_tags(data, [t.tag_id for t in behind])
    return RuleResult(key, title, WARN, message, _ids(data, rows))


def _small(data: HealthData) -> RuleResult:
    rows = np.flatnonzero(np.minimum(data.widths, data.heights) < MIN_EDGE_PX)
    key, title = "small-images", f"Images under {MIN_EDGE_PX} px"
    if not rows.size:
        return RuleResult(key, title, PASS, f"Every image is at least {MIN_EDGE_PX} px a side.")
    return RuleResult(
        key,
        title,
        WARN,
        f"{_plural(rows.size, 'image')} {'has' if rows.size == 1 else 'have'} a shortest edge "
        f"under {MIN_EDGE_PX} px: the model sees them blown up and blurred.",
        _ids(data, rows),
    )


def _aspect(data: HealthData) -> RuleResult:
    w = data.widths.astype(np.float64)
    h = data.heights.astype(np.float64)
    ratio = np.maximum(w, h) / np.maximum(np.minimum(w, h), 1.0)
    rows = np.flatnonzero(ratio > MAX_ASPECT)
    key, title = "aspect-ratio", "Extreme aspect ratios"
    if not rows.size:
        return RuleResult(key, title, PASS, f"No image is longer than {MAX_ASPECT:.0f}:1.")
    return RuleResult(
        key,
        title,
        WARN,
        f"{_plural(rows.size, 'image')} {'is' if rows.size == 1 else 'are'} longer than "
        f"{MAX_ASPECT:.0f}:1: the square crop the model sees keeps a sliver of "
        f"{'it' if rows.size == 1 else 'them'}.",
        _ids(data, rows),
    )


def _label_sets(data: HealthData) -> list[frozenset[int]]:
    sets: list[set[int]] = [set() for _ in range(len(data.image_ids))]
    for row, tag in zip(data.label_rows.tolist(), data.label_tags.tolist(), strict=True):
        sets[row].add(tag)
    for row, tag in zip(data.box_rows.tolist(), data.box_tags.tolist(), strict=True):
        sets[row].add(tag)
    return [frozenset(s) for s in sets]


def _duplicates(data: HealthData, is_detection: bool) -> list[RuleResult]:
    titles = {
        "near-duplicates": "Near-duplicates",
        "label-conflicts": "Copies with different labels",
        "leakage": "Copies across a training split",
    }
    if data.embeddings is None or data.embedded_rows is None or not data.embedded_rows.size:
        note = "No embeddings yet: the check runs once the images are embedded."
        return [RuleResult(key, title, PASS, note) for key, title in titles.items()]
    rows = np.asarray(data.embedded_rows, dtype=np.int64)
    threshold = data.duplicate_similarity
    local_pairs, sims = near_duplicate_pairs(data.embeddings, threshold=threshold)
    pairs = rows[local_pairs]
    groups = [rows[list(g.members)] for g in group_pairs(local_pairs, sims)]
    results = []
    in_groups = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    if groups:
        message = (
            f"{_plural(len(groups), 'group')} of near-duplicates "
            f"({_plural(in_groups.size, 'image')}): copies add no information and, split "
            "between training and validation, inflate the figures. Keep one of each."
        )
        results.append(
            RuleResult(
                "near-duplicates", titles["near-duplicates"], WARN, message, _ids(data, in_groups)
            )
        )
    else:
        results.append(
            RuleResult(
                "near-duplicates", titles["near-duplicates"], PASS, "No near-duplicates found."
            )
        )
    labels = _label_sets(data)
    conflicting = [g for g in groups if len({labels[r] for r in g.tolist()}) > 1]
    if conflicting:
        rows_c = np.concatenate(conflicting)
        results.append(
            RuleResult(
                "label-conflicts",
                titles["label-conflicts"],
                FAIL,
                f"{_plural(len(conflicting), 'group')} of near-duplicates carry different "
                f"{'boxes' if is_detection else 'tags'}: at most one label of each is right.",
                _ids(data, rows_c),
            )
        )
    else:
        results.append(
            RuleResult(
                "label-conflicts",
                titles["label-conflicts"],
                PASS,
                "No near-duplicates carry different labels.",
            )
        )
    results.append(_leakage(data, pairs, titles["leakage"]))
    return results


def _leakage(data: HealthData, pairs: np.ndarray, title: str) -> RuleResult:
    """`pairs` (P, 2) of image rows that are near-duplicates of each other."""
    if data.side is None:
        return RuleResult("leakage", title, PASS, "No completed iteration to check yet.")
    side = np.asarray(data.side)
    a, b = side[pairs[:, 0]], side[pairs[:, 1]]
    split = (a != b) & (a != NOT_IN_SPLIT) & (b != NOT_IN_SPLIT)
    if not split.any():
        return RuleResult(
            "leakage", title, PASS, f"No copies sit on both sides of {data.iteration_name}'s split."
        )
    leaked = pairs[split].reshape(-1)
    return RuleResult(
        "leakage",
        title,
        WARN,
        f"{_plural(int(split.sum()), 'pair')} of near-duplicates sit on both sides of "
        f"{data.iteration_name}'s training/validation split: it was checked on images it "
        "had seen, so its figures are inflated.",
        _ids(data, leaked),
    )


def _box_px(data: HealthData) -> tuple[np.ndarray, np.ndarray]:
    w = data.boxes[:, 2] * data.widths[data.box_rows]
    h = data.boxes[:, 3] * data.heights[data.box_rows]
    return w, h


def _tiny_boxes(data: HealthData) -> RuleResult:
    key, title = "tiny-boxes", "Tiny boxes"
    if not data.boxes.size:
        return RuleResult(key, title, PASS, "No boxes yet.")
    w, h = _box_px(data)
    area = data.boxes[:, 2] * data.boxes[:, 3]
    tiny = (area < TINY_AREA) | (np.minimum(w, h) < TINY_SIDE_PX)
    if not tiny.any():
        return RuleResult(key, title, PASS, "No box is tiny.")
    return RuleResult(
        key,
        title,
        WARN,
        f"{_plural(int(tiny.sum()), 'box')} {'is' if tiny.sum() == 1 else 'are'} under "
        f"{TINY_AREA:.1%} of the image or {TINY_SIDE_PX} px a side: too small for the detector "
        "to see, or drawn by a slip.",
        _ids(data, data.box_rows[tiny]),
    )


def _huge_boxes(data: HealthData) -> RuleResult:
    key, title = "huge-boxes", "Boxes covering the whole image"
    if not data.boxes.size:
        return RuleResult(key, title, PASS, "No boxes yet.")
    huge = data.boxes[:, 2] * data.boxes[:, 3] >= HUGE_AREA
    if not huge.any():
        return RuleResult(key, title, PASS, "No box covers almost the whole image.")
    return RuleResult(
        key,
        title,
        WARN,
        f"{_plural(int(huge.sum()), 'box')} cover{'s' if huge.sum() == 1 else ''} at least "
        f"{HUGE_AREA:.0%} of the image: a box locates nothing there; tag the image instead "
        "(a classification project) or box the object itself.",
        _ids(data, data.box_rows[huge]),
    )


def _positional_bias(data: HealthData) -> RuleResult:
    key, title = "positional-bias", "Tags always in one place"
    if not data.boxes.size:
        return RuleResult(key, title, PASS, "No boxes yet.")
    cx = np.clip(data.boxes[:, 0] + data.boxes[:, 2] / 2, 0, 0.999)
    cy = np.clip(data.boxes[:, 1] + data.boxes[:, 3] / 2, 0, 0.999)
    cell = (cy * BIAS_GRID).astype(int) * BIAS_GRID + (cx * BIAS_GRID).astype(int)
    names = {t.tag_id: t.name for t in data.tags}
    biased: list[int] = []
    for tag in np.unique(data.box_tags).tolist():
        mine = data.box_tags == tag
        if mine.sum() >= BIAS_MIN_BOXES and np.unique(cell[mine]).size == 1:
            biased.append(int(tag))
    if not biased:
        return RuleResult(key, title, PASS, "No tag's boxes all sit in one region.")
    listed = _names([f"“{names.get(t, t)}”" for t in biased])
    return RuleResult(
        key,
        title,
        WARN,
        f"Every box of {listed} sits in the same ninth of the image: the model may learn the "
        "place rather than the object. Add images with it elsewhere.",
        _ids(data, data.box_rows[np.isin(data.box_tags, biased)]),
    )
