"""How unsure a model is about each image: one score in [0, 1] per image, higher = less sure.

The Predictions tab sorts by these scores ("Most gain") and the active-learning selector blends
them in once a project has enough labels, so the rules are the same everywhere:

- Multiclass: ``1 - (p1 - p2)``, the margin between the two most likely classes. The implicit
  background class (an image with none of the tags, the Negative tag) counts as a class with
  probability ``1 - sum(p)`` whenever the tag probabilities sum to less than one, because a model
  torn between "cat" and "nothing" is as unsure as one torn between "cat" and "dog". The margin is
  used rather than the entropy because it depends only on the two classes a reviewer would
  hesitate between, not on how the remaining mass spreads over unlikely tags; with many tags the
  entropy ranks a confident image with a long tail of small probabilities above a 50/50 image.
- Multilabel: every tag is a separate yes/no decision made at `threshold`; an image is as unsure as
  its closest call: ``max over tags of 1 - |p - threshold| / max(threshold, 1 - threshold)``, which
  is 1 exactly at the threshold and 0 at a probability of 0 or 1 on the far side.
- Detection: the same closeness to the threshold per box; an image scores its least sure box, and
  each further box that is also near the threshold (closeness >= 0.5) moves the score a fifth of the
  remaining way to 1 (several doubtful boxes are worth more of a reviewer's time than one). An image
  with no box at all scores `empty_score` (0.5 by default): either nothing is there, or the model
  missed everything, and neither is as doubtful as a box sitting on the threshold.
  Where the image was also run mirrored (stored predictions and suggestions), boxes the model
  does not find both ways round raise the score (`flip_disagreement`, `with_flip_disagreement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Each extra near-threshold box closes this fraction of the remaining gap to 1.
_EXTRA_BOX_WEIGHT = 0.2
# A box counts as "near the threshold" from this closeness on (halfway from sure to the threshold).
_NEAR_CLOSENESS = 0.5


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1; got {threshold}.")


def threshold_closeness(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-entry closeness to `threshold`: 1 at the threshold, 0 at the far end (0 or 1)."""
    _check_threshold(threshold)
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    closeness: np.ndarray = np.clip(
        1.0 - np.abs(p - threshold) / max(threshold, 1.0 - threshold), 0.0, 1.0
    )
    return closeness


def classification_uncertainty(
    probs: np.ndarray, *, multilabel: bool, threshold: float = 0.5
) -> np.ndarray:
    """(N, T) tag probabilities -> (N,) float64 uncertainty in [0, 1] (rules: module docstring).

    `threshold` is used only for multilabel projects.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, T); got shape {p.shape}.")
    if not np.isfinite(p).all():
        raise ValueError("probs must be finite numbers.")
    n, t = p.shape
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    p = np.clip(p, 0.0, 1.0)
    if multilabel:
        if t == 0:
            return np.zeros(n, dtype=np.float64)
        result: np.ndarray = threshold_closeness(p, threshold).max(axis=1)
        return result
    return _margin_uncertainty(p)


def _margin_uncertainty(p: np.ndarray) -> np.ndarray:
    # Background = what the tags leave over; 0 when a softmax over the tags alone sums to 1.
    background = np.clip(1.0 - p.sum(axis=1, keepdims=True), 0.0, 1.0)
    full = np.concatenate([p, background], axis=1)
    if full.shape[1] == 1:
        return np.zeros(full.shape[0], dtype=np.float64)
    top_two = -np.partition(-full, 1, axis=1)[:, :2]
    margin = top_two[:, 0] - top_two[:, 1]
    result: np.ndarray = np.clip(1.0 - margin, 0.0, 1.0)
    return result


# One detected box: (tag, probability, left, top, width, height), or a mapping with "probability".
Box = Sequence[Any] | Mapping[str, Any]


def _box_probability(box: Box) -> float:
    value = box["probability"] if isinstance(box, Mapping) else box[1]
    probability = float(value)
    if not np.isfinite(probability):
        raise ValueError(f"A box probability must be a finite number; got {value!r}.")
    return probability


def detection_uncertainty(
    boxes: Sequence[Sequence[Box]], *, threshold: float = 0.5, empty_score: float = 0.5
) -> np.ndarray:
    """One list of boxes per image -> (N,) float64 uncertainty in [0, 1] (rules: module docstring).

    A box is ``(tag, probability, left, top, width, height)`` or a mapping with a "probability"
    key (the stored prediction format).
    """
    _check_threshold(threshold)
    if not 0.0 <= empty_score <= 1.0:
        raise ValueError(f"empty_score must be between 0 and 1; got {empty_score}.")
    scores = np.empty(len(boxes), dtype=np.float64)
    for row, image_boxes in enumerate(boxes):
        if len(image_boxes) == 0:
            scores[row] = empty_score
            continue
        probabilities = np.array([_box_probability(box) for box in image_boxes])
        closeness = threshold_closeness(probabilities, threshold)
        least_sure = float(closeness.max())
        extra_near = max(0, int((closeness >= _NEAR_CLOSENESS).sum()) - 1)
        scores[row] = 1.0 - (1.0 - least_sure) * (1.0 - _EXTRA_BOX_WEIGHT) ** extra_near
    return scores


# --- Detection: does the model agree with itself under a horizontal flip? -----------------------

# Boxes of the two passes are the same object from this overlap on (the detection metrics' IoU).
_FLIP_MATCH_IOU = 0.5
# A matched pair whose probabilities differ by this much counts as a disagreeing box too.
_FLIP_PROBABILITY_GAP = 0.25


def unflip_box(box: Sequence[Any]) -> tuple[Any, ...]:
    """A box (tag, probability, left, top, width, height; normalised) found in the mirror image,
    in the original image's coordinates."""
    tag, probability, left, top, width, height = box
    return (tag, probability, 1.0 - float(left) - float(width), top, width, height)


def _iou(a: Sequence[Any], b: Sequence[Any]) -> float:
    ax, ay, aw, ah = (float(v) for v in a[2:6])
    bx, by, bw, bh = (float(v) for v in b[2:6])
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(w, 0.0) * max(h, 0.0)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def flip_disagreement(
    boxes: Sequence[Sequence[Any]],
    mirrored: Sequence[Sequence[Any]],
    *,
    threshold: float = 0.5,
) -> tuple[float, int]:
    """How far a detector disagrees with itself between an image and its mirror image.

    `boxes` are the image's (tag, probability, left, top, width, height), `mirrored` the ones
    found in the horizontally flipped image, as found there (un-flipped here). Boxes of either
    pass from half the threshold up are matched greedily, most probable first, to a box of the
    same tag in the other pass with IoU >= 0.5. A box left unmatched disagrees fully; a matched
    pair disagrees by the gap between its two probabilities. Returns (the disagreement in
    [0, 1]: the mean over boxes and pairs weighted by their higher probability, so a faint box
    counts for little; the number of unmatched boxes and pairs at least 0.25 apart). No box in
    either pass: (0.0, 0), both agree that nothing is there.

    Why a flip: a model that has learnt an object finds it mirrored too (training augments with
    flips), so what it finds only one way round is what it has not learnt yet, which is the
    same doubt a classifier's margin measures, available from one extra forward pass.
    """
    _check_threshold(threshold)
    floor = threshold / 2
    ours = [tuple(b) for b in boxes if _box_probability(b) >= floor]
    theirs = [unflip_box(b) for b in mirrored if _box_probability(b) >= floor]
    if not ours and not theirs:
        return 0.0, 0
    weights: list[float] = []
    gaps: list[float] = []
    free = list(range(len(theirs)))
    for box in sorted(ours, key=lambda b: -_box_probability(b)):
        candidates = [
            (overlap, j)
            for j in free
            if theirs[j][0] == box[0] and (overlap := _iou(box, theirs[j])) >= _FLIP_MATCH_IOU
        ]
        p = _box_probability(box)
        if not candidates:
            weights.append(p)
            gaps.append(1.0)
            continue
        _, j = max(candidates)
        free.remove(j)
        q = _box_probability(theirs[j])
        weights.append(max(p, q))
        gaps.append(abs(p - q))
    for j in free:
        weights.append(_box_probability(theirs[j]))
        gaps.append(1.0)
    w = np.asarray(weights, dtype=np.float64)
    g = np.asarray(gaps, dtype=np.float64)
    disagreement = float(np.clip((w * g).sum() / max(w.sum(), _EPS_WEIGHT), 0.0, 1.0))
    return disagreement, int((g >= _FLIP_PROBABILITY_GAP).sum())


_EPS_WEIGHT = 1e-9


def with_flip_disagreement(uncertainty: float, disagreement: float) -> float:
    """The detection uncertainty raised by the flip disagreement: each closes its share of the
    gap to 1 (either alone can make an image doubtful; both make it more so)."""
    return float(1.0 - (1.0 - uncertainty) * (1.0 - float(np.clip(disagreement, 0.0, 1.0))))


# --- Detection: what an image's label is expected to teach ("Most gain") ------------------------

# Boxes below this probability are the detector's noise: it keeps up to 100 boxes an image from
# 0.05 on, and the faintest of them say nothing of what is there.
BOX_FLOOR = 0.1
# How much a flip disagreement adds, per unit of box mass at or above half the threshold.
_FLIP_BOX_WEIGHT = 0.25


def doubtful_boxes(
    box_probabilities: Sequence[Sequence[float]],
    flip: Sequence[float | None] | None = None,
    *,
    threshold: float = 0.5,
    floor: float = BOX_FLOOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Per image (doubtful boxes expected (N,) float64, holds objects (N,) bool): what labeling
    it would teach a detector.

    Doubtful boxes = the closeness to `threshold` summed over its boxes from `floor` up, plus
    the flip disagreement times a quarter of the box mass at or above half the threshold (the
    boxes `flip_disagreement` weighs; at least half the threshold, so a mirror image that finds
    what this one does not still counts). Holds objects = some box at or above half the threshold;
    an image without one is predicted empty.

    Why sums, not the least sure box (`detection_uncertainty`): a detector learns from boxes,
    and an image holds 0-3 or more of them. Measured on the bench's detection pool (2 seeds, 10
    and 20 labeled images, 1.6-1.7 objects an image), the ten images of highest stored
    uncertainty held 1.3-2.0 objects: the flip disagreement is a mean over boxes, so it is
    highest on images with only a faint box or two. The ten of most doubtful boxes held 1.8-2.3,
    and more of the objects the model missed.
    """
    _check_threshold(threshold)
    flips = list(flip) if flip is not None else [None] * len(box_probabilities)
    if len(flips) != len(box_probabilities):
        raise ValueError(
            f"flip must have one value an image ({len(box_probabilities)}); got {len(flips)}."
        )
    doubt = np.zeros(len(box_probabilities), dtype=np.float64)
    holds = np.zeros(len(box_probabilities), dtype=bool)
    for row, (values, disagreement) in enumerate(zip(box_probabilities, flips, strict=True)):
        p = np.asarray(values, dtype=np.float64).reshape(-1)
        if not np.isfinite(p).all():
            raise ValueError("box probabilities must be finite numbers.")
        kept = np.clip(p[p >= floor], 0.0, 1.0)
        believed = kept[kept >= threshold / 2]
        holds[row] = believed.size > 0
        doubt[row] = threshold_closeness(kept, threshold).sum() if kept.size else 0.0
        if disagreement is not None:
            mass = max(float(believed.sum()), threshold / 2)
            doubt[row] += _FLIP_BOX_WEIGHT * float(np.clip(disagreement, 0.0, 1.0)) * mass
    return doubt, holds
