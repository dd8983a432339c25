"""Rules on each image's geometry: too small, too long."""

from __future__ import annotations

import numpy as np

from .data import MAX_ASPECT, MIN_EDGE_PX, PASS, WARN, HealthData, RuleResult, ids, plural


def small(data: HealthData) -> RuleResult:
    rows = np.flatnonzero(np.minimum(data.widths, data.heights) < MIN_EDGE_PX)
    key, title = "small-images", f"Images under {MIN_EDGE_PX} px"
    if not rows.size:
        return RuleResult(key, title, PASS, f"Every image is at least {MIN_EDGE_PX} px a side.")
    return RuleResult(
        key,
        title,
        WARN,
        f"{plural(rows.size, 'image')} {'has' if rows.size == 1 else 'have'} a shortest edge "
        f"under {MIN_EDGE_PX} px: the model sees them blown up and blurred.",
        ids(data, rows),
    )


def aspect(data: HealthData) -> RuleResult:
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
        f"{plural(rows.size, 'image')} {'is' if rows.size == 1 else 'are'} longer than "
        f"{MAX_ASPECT:.0f}:1: the square crop the model sees keeps a sliver of "
        f"{'it' if rows.size == 1 else 'them'}.",
        ids(data, rows),
    )
