"""Object-detection metrics: per-tag AP, COCO mAP, precision/recall at two thresholds.

Boxes use Custom Vision's normalised convention everywhere: ``(left, top, width, height)`` as
fractions of the image's width and height. IoU is invariant to scaling either axis, so the
numbers equal those computed on pixel boxes.

AP follows COCO exactly (``pycocotools.cocoeval.COCOeval`` with ``iouType="bbox"``, area range
"all", at most 100 detections per image and tag): greedy matching in score order, recall sampled
at 101 points on a precision envelope. The tests check our mAP against COCOeval to 1e-6, so when
in doubt the pycocotools source is the specification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# (tag index, left, top, width, height), normalised.
GroundTruthBox = tuple[int, float, float, float, float]
# (tag index, probability, left, top, width, height), normalised.
Detection = tuple[int, float, float, float, float, float]

COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(
    float(t) for t in np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
)
_RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.00 - 0.0) / 0.01)) + 1)
_FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DetectionMetrics:
    """AP per tag and their means. A tag without ground truth has ``None`` and is left out of
    the means (as COCOeval does); a mean is ``None`` when no tag has ground truth."""

    ap50: tuple[float | None, ...]  # per tag, AP at IoU 0.5
    ap: tuple[float | None, ...]  # per tag, AP averaged over IoU 0.50:0.05:0.95
    map50: float | None
    map: float | None  # mAP@[.5:.95], COCOeval's stats[0]


@dataclass(frozen=True)
class TagPrecisionRecall:
    """Counts for one tag at one probability threshold and one overlap threshold.

    ``precision`` is 0.0 when the tag has no detection above the threshold and ``recall`` is
    0.0 when it has no ground truth, so a slider never shows a blank; the counts let a caller
    tell those cases apart.
    """

    precision: float
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int


def evaluate_detections(
    ground_truth: Sequence[Sequence[GroundTruthBox]],
    detections: Sequence[Sequence[Detection]],
    *,
    num_tags: int,
    max_detections: int = 100,
) -> DetectionMetrics:
    """COCO-style AP for each tag at IoU 0.5 and averaged over IoU 0.50..0.95.

    ``ground_truth[i]`` and ``detections[i]`` belong to image ``i``; an image may have none of
    either. Probabilities only rank detections, so any range works.
    """
    _validate(ground_truth, detections, num_tags=num_tags)
    if max_detections < 1:
        raise ValueError(f"max_detections must be at least 1, got {max_detections}.")
    thresholds = np.asarray(COCO_IOU_THRESHOLDS)
    ap50: list[float | None] = []
    ap: list[float | None] = []
    for tag in range(num_tags):
        precision = _tag_precision_envelope(
            ground_truth, detections, tag=tag, thresholds=thresholds, max_detections=max_detections
        )
        if precision is None:
            ap50.append(None)
            ap.append(None)
            continue
        ap50.append(float(precision[0].mean()))
        ap.append(float(precision.mean()))
    return DetectionMetrics(
        ap50=tuple(ap50), ap=tuple(ap), map50=_mean_present(ap50), map=_mean_present(ap)
    )


def average_precision_at(
    ground_truth: Sequence[Sequence[GroundTruthBox]],
    detections: Sequence[Sequence[Detection]],
    *,
    num_tags: int,
    overlap_threshold: float,
    max_detections: int = 100,
) -> tuple[float | None, ...]:
    """COCO 101-point AP per tag at one IoU threshold (the overlap slider); ``None`` for a
    tag without ground truth."""
    _validate(ground_truth, detections, num_tags=num_tags)
    _check_fraction("overlap_threshold", overlap_threshold)
    result: list[float | None] = []
    for tag in range(num_tags):
        precision = _tag_precision_envelope(
            ground_truth,
            detections,
            tag=tag,
            thresholds=np.asarray([overlap_threshold]),
            max_detections=max_detections,
        )
        result.append(None if precision is None else float(precision[0].mean()))
    return tuple(result)


def precision_recall_at(
    ground_truth: Sequence[Sequence[GroundTruthBox]],
    detections: Sequence[Sequence[Detection]],
    *,
    num_tags: int,
    probability_threshold: float,
    overlap_threshold: float,
) -> tuple[TagPrecisionRecall, ...]:
    """Per-tag precision and recall keeping detections with probability >= the threshold and
    counting a detection as correct when it overlaps an unmatched true box of its tag with
    IoU >= ``overlap_threshold`` (greedy, highest probability first, as in COCO)."""
    _validate(ground_truth, detections, num_tags=num_tags)
    _check_fraction("probability_threshold", probability_threshold)
    _check_fraction("overlap_threshold", overlap_threshold)
    thresholds = np.asarray([overlap_threshold])
    counts = np.zeros((num_tags, 3), dtype=np.int64)  # tp, fp, ground-truth count
    for gts, dets in zip(ground_truth, detections, strict=True):
        for tag in range(num_tags):
            gt_boxes = _boxes([g[1:] for g in gts if g[0] == tag])
            kept = [d for d in dets if d[0] == tag and d[1] >= probability_threshold]
            scores = np.asarray([d[1] for d in kept], dtype=np.float64)
            order = np.argsort(-scores, kind="mergesort")
            det_boxes = _boxes([kept[i][2:] for i in order])
            matched = _match(gt_boxes, det_boxes, thresholds)[0]
            counts[tag] += (int(matched.sum()), int((~matched).sum()), len(gt_boxes))
    result = []
    for tp, fp, n_gt in counts.tolist():
        result.append(
            TagPrecisionRecall(
                precision=tp / (tp + fp) if tp + fp else 0.0,
                recall=tp / n_gt if n_gt else 0.0,
                true_positives=tp,
                false_positives=fp,
                false_negatives=n_gt - tp,
            )
        )
    return tuple(result)


def box_iou(a: _FloatArray, b: _FloatArray) -> _FloatArray:
    """IoU matrix (len(a), len(b)) of (left, top, width, height) boxes, shapes (N, 4), (M, 4)."""
    a_x2, a_y2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    b_x2, b_y2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(a_x2[:, None], b_x2[None, :]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a_y2[:, None], b_y2[None, :]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.asarray(iou, dtype=np.float64)


def _tag_precision_envelope(
    ground_truth: Sequence[Sequence[GroundTruthBox]],
    detections: Sequence[Sequence[Detection]],
    *,
    tag: int,
    thresholds: _FloatArray,
    max_detections: int,
) -> _FloatArray | None:
    """(T, 101) interpolated precision at COCO's recall points, or None without ground truth."""
    n_gt = 0
    all_scores: list[_FloatArray] = []
    all_matched: list[npt.NDArray[np.bool_]] = []
    for gts, dets in zip(ground_truth, detections, strict=True):
        gt_boxes = _boxes([g[1:] for g in gts if g[0] == tag])
        mine = [d for d in dets if d[0] == tag]
        scores = np.asarray([d[1] for d in mine], dtype=np.float64)
        # COCOeval keeps the top max_detections per image and tag, ordered by a stable sort.
        order = np.argsort(-scores, kind="mergesort")[:max_detections]
        n_gt += len(gt_boxes)
        all_scores.append(scores[order])
        all_matched.append(_match(gt_boxes, _boxes([mine[i][2:] for i in order]), thresholds))
    if n_gt == 0:
        return None
    scores = np.concatenate(all_scores)
    matched = np.concatenate(all_matched, axis=1)
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(matched[:, order], axis=1, dtype=np.float64)
    fp = np.cumsum(~matched[:, order], axis=1, dtype=np.float64)
    precision_at = np.zeros((len(thresholds), len(_RECALL_POINTS)))
    for t in range(len(thresholds)):
        if not len(order):
            continue
        recall = tp[t] / n_gt
        precision = tp[t] / (fp[t] + tp[t] + np.spacing(1))
        # Precision envelope: the best precision at any recall at least this high.
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        index = np.searchsorted(recall, _RECALL_POINTS, side="left")
        valid = index < len(precision)
        precision_at[t, valid] = precision[index[valid]]
    return precision_at


def _match(
    gt_boxes: _FloatArray, det_boxes: _FloatArray, thresholds: _FloatArray
) -> npt.NDArray[np.bool_]:
    """(T, D) True where detection d (already in score order) matches a true box at threshold t.

    Mirrors COCOeval.evaluateImg: each detection takes the still-unmatched true box with the
    highest IoU >= t; on a tie the later box wins.
    """
    matched = np.zeros((len(thresholds), len(det_boxes)), dtype=bool)
    if not len(gt_boxes) or not len(det_boxes):
        return matched
    ious = box_iou(det_boxes, gt_boxes)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), dtype=bool)
        for d in range(len(det_boxes)):
            best_iou = min(float(threshold), 1 - 1e-10)
            best = -1
            for g in range(len(gt_boxes)):
                if taken[g] or ious[d, g] < best_iou:
                    continue
                best_iou, best = float(ious[d, g]), g
            if best >= 0:
                taken[best] = True
                matched[t, d] = True
    return matched


def _boxes(rows: Sequence[Sequence[float]]) -> _FloatArray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _mean_present(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}.")


def _validate(
    ground_truth: Sequence[Sequence[GroundTruthBox]],
    detections: Sequence[Sequence[Detection]],
    *,
    num_tags: int,
) -> None:
    if num_tags < 1:
        raise ValueError(f"num_tags must be at least 1, got {num_tags}.")
    if len(ground_truth) != len(detections):
        raise ValueError(
            "ground_truth and detections must have one entry per image, got "
            f"{len(ground_truth)} and {len(detections)}."
        )
    for rows, width in ((ground_truth, 5), (detections, 6)):
        for image_rows in rows:
            for row in image_rows:
                if len(row) != width or not 0 <= int(row[0]) < num_tags:
                    raise ValueError(
                        f"Each box must be a {width}-tuple starting with a tag index in "
                        f"[0, {num_tags}), got {row!r}."
                    )
