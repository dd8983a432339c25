"""Detection rules on the boxes: tiny, huge, and a tag whose boxes all sit in one place."""

from __future__ import annotations

import numpy as np

from .data import (
    BIAS_GRID,
    BIAS_MIN_BOXES,
    HUGE_AREA,
    PASS,
    TINY_AREA,
    TINY_SIDE_PX,
    WARN,
    HealthData,
    RuleResult,
    ids,
    name_list,
    plural,
)


def _box_px(data: HealthData) -> tuple[np.ndarray, np.ndarray]:
    w = data.boxes[:, 2] * data.widths[data.box_rows]
    h = data.boxes[:, 3] * data.heights[data.box_rows]
    return w, h


def tiny_boxes(data: HealthData) -> RuleResult:
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
        f"{plural(int(tiny.sum()), 'box')} {'is' if tiny.sum() == 1 else 'are'} under "
        f"{TINY_AREA:.1%} of the image or {TINY_SIDE_PX} px a side: too small for the detector "
        "to see, or drawn by a slip.",
        ids(data, data.box_rows[tiny]),
    )


def huge_boxes(data: HealthData) -> RuleResult:
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
        f"{plural(int(huge.sum()), 'box')} cover{'s' if huge.sum() == 1 else ''} at least "
        f"{HUGE_AREA:.0%} of the image: a box locates nothing there; tag the image instead "
        "(a classification project) or box the object itself.",
        ids(data, data.box_rows[huge]),
    )


def positional_bias(data: HealthData) -> RuleResult:
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
    listed = name_list([f"“{names.get(t, t)}”" for t in biased])
    return RuleResult(
        key,
        title,
        WARN,
        f"Every box of {listed} sits in the same ninth of the image: the model may learn the "
        "place rather than the object. Add images with it elsewhere.",
        ids(data, data.box_rows[np.isin(data.box_tags, biased)]),
    )
