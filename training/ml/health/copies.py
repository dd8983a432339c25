"""Rules on near-duplicates (training.ml.duplicates): copies, copies with different labels,
copies on both sides of the latest iteration's split.
"""

from __future__ import annotations

import numpy as np

from ..duplicates import group_pairs, near_duplicate_pairs
from .data import FAIL, NOT_IN_SPLIT, PASS, WARN, HealthData, RuleResult, ids, plural


def _label_sets(data: HealthData) -> list[frozenset[int]]:
    sets: list[set[int]] = [set() for _ in range(len(data.image_ids))]
    for row, tag in zip(data.label_rows.tolist(), data.label_tags.tolist(), strict=True):
        sets[row].add(tag)
    for row, tag in zip(data.box_rows.tolist(), data.box_tags.tolist(), strict=True):
        sets[row].add(tag)
    return [frozenset(s) for s in sets]


TITLES = {
    "near-duplicates": "Near-duplicates",
    "label-conflicts": "Copies with different labels",
    "leakage": "Copies across a training split",
}


def duplicates(data: HealthData, is_detection: bool) -> list[RuleResult]:
    if data.embeddings is None or data.embedded_rows is None or not data.embedded_rows.size:
        note = "No embeddings yet: the check runs once the images are embedded."
        return [RuleResult(key, title, PASS, note) for key, title in TITLES.items()]
    rows = np.asarray(data.embedded_rows, dtype=np.int64)
    threshold = data.duplicate_similarity
    local_pairs, sims = near_duplicate_pairs(data.embeddings, threshold=threshold)
    pairs = rows[local_pairs]
    groups = [rows[list(g.members)] for g in group_pairs(local_pairs, sims)]
    return [
        _near_duplicates(data, groups),
        _label_conflicts(data, groups, is_detection),
        _leakage(data, pairs, TITLES["leakage"]),
    ]


def _near_duplicates(data: HealthData, groups: list[np.ndarray]) -> RuleResult:
    title = TITLES["near-duplicates"]
    if not groups:
        return RuleResult("near-duplicates", title, PASS, "No near-duplicates found.")
    in_groups = np.concatenate(groups)
    message = (
        f"{plural(len(groups), 'group')} of near-duplicates "
        f"({plural(in_groups.size, 'image')}): copies add no information and, split "
        "between training and validation, inflate the figures. Keep one of each."
    )
    return RuleResult("near-duplicates", title, WARN, message, ids(data, in_groups))


def _label_conflicts(data: HealthData, groups: list[np.ndarray], is_detection: bool) -> RuleResult:
    title = TITLES["label-conflicts"]
    labels = _label_sets(data)
    conflicting = [g for g in groups if len({labels[r] for r in g.tolist()}) > 1]
    if not conflicting:
        return RuleResult(
            "label-conflicts", title, PASS, "No near-duplicates carry different labels."
        )
    return RuleResult(
        "label-conflicts",
        title,
        FAIL,
        f"{plural(len(conflicting), 'group')} of near-duplicates carry different "
        f"{'boxes' if is_detection else 'tags'}: at most one label of each is right.",
        ids(data, np.concatenate(conflicting)),
    )


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
        f"{plural(int(split.sum()), 'pair')} of near-duplicates sit on both sides of "
        f"{data.iteration_name}'s training/validation split: it was checked on images it "
        "had seen, so its figures are inflated.",
        ids(data, leaked),
    )
