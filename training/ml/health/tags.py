"""Rules on how much each tag has: images (or boxes) per tag, unlabeled images, balance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .data import (
    BALANCE,
    FAIL,
    MIN_BOXES,
    MIN_IMAGES,
    PASS,
    RECOMMENDED,
    WARN,
    HealthData,
    RuleResult,
    TagInfo,
    ids,
    name_list,
    plural,
)


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


def images_per_tag(data: HealthData, is_detection: bool) -> RuleResult:
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
    described = [f"“{t.name}” ({plural(counts[t.tag_id], unit(t))})" for t in failing + warning]
    if failing:
        message = (
            f"{plural(len(failing), 'tag')} {'is' if len(failing) == 1 else 'are'} under the "
            f"minimum of {MIN_IMAGES} images"
            + (f" or {MIN_BOXES} boxes" if is_detection else "")
            + f": {name_list(described[: len(failing)])}. Training cannot learn "
            f"{'it' if len(failing) == 1 else 'them'} from so few; {RECOMMENDED} are recommended."
        )
        return RuleResult(
            key, title, FAIL, message, ids(data, _rows_of_tags(data, [t.tag_id for t in failing]))
        )
    if warning:
        message = (
            f"{name_list(described)} {'has' if len(warning) == 1 else 'have'} fewer than the "
            f"recommended {RECOMMENDED}; more examples make a steadier model."
        )
        return RuleResult(
            key, title, WARN, message, ids(data, _rows_of_tags(data, [t.tag_id for t in warning]))
        )
    what = "boxes" if is_detection else "images"
    return RuleResult(key, title, PASS, f"Every tag has at least {RECOMMENDED} {what}.")


def _unlabeled_rows(data: HealthData) -> np.ndarray:
    labeled = np.zeros(len(data.image_ids), dtype=bool)
    labeled[data.label_rows] = True
    labeled[data.box_rows] = True
    result: np.ndarray = np.flatnonzero(~labeled)
    return result


def untagged(data: HealthData) -> RuleResult:
    rows = _unlabeled_rows(data)
    if not rows.size:
        return RuleResult("untagged", "Untagged images", PASS, "Every image is tagged.")
    return RuleResult(
        "untagged",
        "Untagged images",
        WARN,
        f"{plural(rows.size, 'image')} {'has' if rows.size == 1 else 'have'} no tag and will "
        "be left out of training.",
        ids(data, rows),
    )


def no_boxes(data: HealthData) -> RuleResult:
    key, title = "no-boxes", "Images without boxes"
    rows = _unlabeled_rows(data)  # the Negative tag is a label row: those are excluded
    if not rows.size:
        return RuleResult(key, title, PASS, "Every image has boxes or is marked Negative.")
    return RuleResult(
        key,
        title,
        WARN,
        f"{plural(rows.size, 'image')} {'has' if rows.size == 1 else 'have'} no box and no "
        "Negative tag: box the objects, or mark an image with none as Negative so it trains "
        "as background.",
        ids(data, rows),
    )


def balance(data: HealthData, is_detection: bool) -> RuleResult:
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
        f" {plural(len(behind) - 1, 'other tag')} {'is' if len(behind) == 2 else 'are'} "
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
    return RuleResult(key, title, WARN, message, ids(data, rows))
