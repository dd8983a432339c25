"""Classification metrics, computed with numpy so the worker needs no scikit-learn.

Definitions follow scikit-learn exactly (tests compare to 1e-9): average precision is
sum_n (R_n - R_{n-1}) P_n over distinct score thresholds, ROC AUC is the trapezoidal area (equal
to the tie-corrected Mann-Whitney statistic), precision/recall use zero_division=0. A tag is
"predicted" for an image when its score is >= threshold. Undefined values are None: ROC AUC
without both positives and negatives, AP without positives; the macro means skip them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _average_precision(y: np.ndarray, s: np.ndarray) -> float | None:
    positives = int(y.sum())
    if positives == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    # Last index of each run of equal scores: one point of the curve per distinct threshold.
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[last]
    predicted = last + 1
    precision = tps / predicted
    recall = tps / positives
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(s)
    rank_sum = float(ranks[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    return ranks


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None


def _confusion(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> list[list[int]]:
    t = y_true.shape[1]
    truth = np.where(y_true.any(axis=1), y_true.argmax(axis=1), t)
    best = scores.argmax(axis=1)
    predicted = np.where(scores[np.arange(len(scores)), best] >= threshold, best, t)
    matrix = np.zeros((t + 1, t + 1), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix.tolist()  # type: ignore[no-any-return]


def classification_metrics(
    y_true: np.ndarray, scores: np.ndarray, *, threshold: float = 0.5, multiclass: bool
) -> dict[str, Any]:
    """Per-tag and overall metrics for (N, T) {0,1} truth and (N, T) probabilities.

    Returns a JSON-serialisable dict: "per_tag" (precision, recall, ap, roc_auc, positives,
    predicted per tag, in tag order), micro "precision"/"recall", macro "map"/"roc_auc", and for
    multiclass a (T+1)x(T+1) "confusion" (rows truth, columns prediction, last = background/none;
    the prediction is the top tag if its score reaches the threshold, else none).
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(
            f"y_true and scores must both be (N, T); got {np.shape(y_true)} and {np.shape(scores)}."
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1.")
    y = y.astype(np.int64)
    hits = s >= threshold
    per_tag: list[dict[str, Any]] = []
    for column in range(y.shape[1]):
        truth, score, hit = y[:, column], s[:, column], hits[:, column]
        true_positive = int((hit & (truth == 1)).sum())
        per_tag.append(
            {
                "precision": _ratio(true_positive, int(hit.sum())),
                "recall": _ratio(true_positive, int(truth.sum())),
                "ap": _average_precision(truth, score),
                "roc_auc": _roc_auc(truth, score),
                "positives": int(truth.sum()),
                "predicted": int(hit.sum()),
            }
        )
    all_tp = int((hits & (y == 1)).sum())
    result: dict[str, Any] = {
        "per_tag": per_tag,
        "precision": _ratio(all_tp, int(hits.sum())),
        "recall": _ratio(all_tp, int(y.sum())),
        "map": _mean_defined([tag["ap"] for tag in per_tag]),
        "roc_auc": _mean_defined([tag["roc_auc"] for tag in per_tag]),
        "threshold": float(threshold),
    }
    if multiclass:
        result["confusion"] = _confusion(y, s, threshold)
        result["accuracy"] = _top1_accuracy(y, s, threshold)
    return result


def _top1_accuracy(y: np.ndarray, s: np.ndarray, threshold: float) -> float | None:
    """Share of images whose most likely tag is their tag; an image without tags (Negative) is
    right when no tag reaches the threshold. The model-quality signal "Most gain" reads: unlike
    the confusion matrix, a right answer given with little confidence still counts."""
    if y.shape[0] == 0 or y.shape[1] == 0:
        return None
    has_tag = y.sum(axis=1) > 0
    right = np.where(
        has_tag, y[np.arange(y.shape[0]), s.argmax(axis=1)] == 1, s.max(axis=1) < threshold
    )
    return float(right.mean())
