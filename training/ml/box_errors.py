"""Detection label-error candidates: boxes the model confidently disputes, from held-out
detections.

Confident learning (training.ml.confident_learning) carried over to boxes. A detection of tag j
is *confident* when its probability reaches t_j, tag j's average self-confidence: the mean
probability of the held-out detections of tag j that match (IoU >= MATCH_IOU) a labeled box of
tag j. Then, per held-out image, a confident detection that
- matches a labeled box of another tag i, while no confident detection of tag i matches that box
  -> "wrong tag" (suggest j for the box);
- overlaps no labeled box at all (IoU < NEAR_IOU with every one) -> "missed box" (suggest adding
  it);
- overlaps a labeled box of its own tag only loosely (NEAR_IOU <= IoU < MATCH_IOU) while no
  detection of that tag matches the box -> "badly placed box" (suggest the detection's box).
One candidate per labeled box (the most confident), ranked by the detection's probability, then
by how far it clears its tag's threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .detection_metrics import box_iou

MATCH_IOU = 0.5
NEAR_IOU = 0.1
WRONG_TAG, MISSED, MISPLACED = "wrong-tag", "missed", "misplaced"

# (tag index, left, top, width, height) and (tag index, probability, left, top, width, height)
Truth = Sequence[float]
Detection = Sequence[float]


@dataclass(frozen=True)
class BoxCandidate:
    row: int  # the image
    kind: str  # WRONG_TAG, MISSED or MISPLACED
    box_index: int  # the labeled box it disputes; -1 for a missed box
    given_tag: int  # -1 for a missed box
    suggested_tag: int
    box: tuple[float, float, float, float]  # the detection's box (left, top, width, height)
    confidence: float


def detection_thresholds(
    truths: Sequence[Sequence[Truth]], detections: Sequence[Sequence[Detection]], num_tags: int
) -> np.ndarray:
    """(num_tags,) average self-confidence per tag; +inf for a tag with no matched detection."""
    sums, counts = np.zeros(num_tags), np.zeros(num_tags)
    for truth, found in zip(truths, detections, strict=True):
        t, d = _arrays(truth, found)
        if not len(t) or not len(d):
            continue
        iou = box_iou(d[:, 2:6], t[:, 1:5])
        same = d[:, 0:1].astype(int) == t[None, :, 0].astype(int)
        for k in np.flatnonzero(((iou >= MATCH_IOU) & same).any(axis=1)):
            sums[int(d[k, 0])] += d[k, 1]
            counts[int(d[k, 0])] += 1
    result: np.ndarray = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    return result


def find_box_errors(
    truths: Sequence[Sequence[Truth]],
    detections: Sequence[Sequence[Detection]],
    *,
    num_tags: int,
) -> list[BoxCandidate]:
    """Candidates over held-out images, most confident first (module docstring)."""
    if len(truths) != len(detections):
        raise ValueError("truths and detections must list the same images.")
    thresholds = detection_thresholds(truths, detections, num_tags)
    found: list[BoxCandidate] = []
    for row, (truth, dets) in enumerate(zip(truths, detections, strict=True)):
        found += _image_candidates(row, *_arrays(truth, dets), thresholds)
    return sorted(found, key=lambda c: (-c.confidence, c.row, c.box_index))


def _arrays(truth: Sequence[Truth], found: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(truth, dtype=np.float64).reshape(-1, 5)
    d = np.asarray(found, dtype=np.float64).reshape(-1, 6)
    if (t[:, 0] < 0).any() or (d[:, 0] < 0).any():
        raise ValueError("tag indexes must be >= 0.")
    return t, d


def _image_candidates(
    row: int, t: np.ndarray, d: np.ndarray, thresholds: np.ndarray
) -> list[BoxCandidate]:
    if not len(d):
        return []
    tag_of = d[:, 0].astype(int)
    confident = d[:, 1] >= thresholds[np.clip(tag_of, 0, len(thresholds) - 1)]
    iou = box_iou(d[:, 2:6], t[:, 1:5]) if len(t) else np.zeros((len(d), 0))
    truth_tag = t[:, 0].astype(int)
    same = tag_of[:, None] == truth_tag[None, :]
    matched_same = ((iou >= MATCH_IOU) & same).any(axis=0)  # any detection of its tag matches
    confirmed = ((iou >= MATCH_IOU) & same & confident[:, None]).any(axis=0)
    best: dict[int, BoxCandidate] = {}
    missed: list[BoxCandidate] = []
    for k in np.flatnonzero(confident):
        box = (float(d[k, 2]), float(d[k, 3]), float(d[k, 4]), float(d[k, 5]))
        p, j = float(d[k, 1]), int(tag_of[k])
        if not len(t) or iou[k].max() < NEAR_IOU:
            missed.append(BoxCandidate(row, MISSED, -1, -1, j, box, p))
            continue
        b = int(iou[k].argmax())
        if iou[k, b] >= MATCH_IOU and truth_tag[b] != j and not confirmed[b]:
            candidate = BoxCandidate(row, WRONG_TAG, b, int(truth_tag[b]), j, box, p)
        elif NEAR_IOU <= iou[k, b] < MATCH_IOU and truth_tag[b] == j and not matched_same[b]:
            candidate = BoxCandidate(row, MISPLACED, b, j, j, box, p)
        else:
            continue
        if b not in best or best[b].confidence < p:
            best[b] = candidate
    return [*best.values(), *_dedupe_missed(missed)]


def _dedupe_missed(missed: list[BoxCandidate]) -> list[BoxCandidate]:
    """One missed-box candidate per object: drop a detection overlapping a more confident one."""
    kept: list[BoxCandidate] = []
    for c in sorted(missed, key=lambda c: -c.confidence):
        boxes = np.asarray([k.box for k in kept]).reshape(-1, 4)
        if not len(kept) or box_iou(np.asarray([c.box]), boxes).max() < MATCH_IOU:
            kept.append(c)
    return kept
