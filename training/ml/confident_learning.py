"""Label-error candidates by confident learning, from out-of-fold probabilities.

Implemented from the paper (Northcutt, Jiang and Chuang, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 70, 2021), not from the cleanlab package (AGPL):

1. Per-class thresholds t_j = the average self-confidence of class j: the mean predicted
   probability of j over the examples labeled j (section 3.1, eq. 2).
2. The confident joint C[i][j]: an example labeled i counts towards j when p_j >= t_j; among
   several such classes, the most probable one (eq. 1). Examples above no threshold count nowhere.
3. Off-diagonal entries of C are the label-error candidates ("C_confusion", section 3.2): the
   example is confidently of another class than its label. The suggested class is that j.
4. Candidates are ranked by the normalized margin p_given - max_{j != given} p_j (most negative
   first: the model prefers another class most strongly; section 3.2 "ranking").

Multiclass: probabilities (N, K) over K classes (the caller adds Negative as a class when the
project uses it). Multilabel: each tag is its own two-class problem (absent, present) with
probabilities (1 - p, p), so a candidate says "add tag" or "remove tag".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


@dataclass(frozen=True)
class Candidate:
    """One likely label error. For multilabel, `column` is the tag and given/suggested are 0
    (absent) or 1 (present); for multiclass, `column` is -1 and given/suggested are classes."""

    row: int
    given: int
    suggested: int
    confidence: float  # the probability of the suggested class (or of the tag's presence)
    margin: float  # p_given - max other: negative, lower = more confidently wrong
    column: int = -1


def per_class_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j (K,): mean p_j over the examples labeled j; +inf for a class no example carries
    (nothing can be confidently of a class that was never shown)."""
    p, y = _validate(probabilities, labels)
    k = p.shape[1]
    counts = np.bincount(y, minlength=k)
    sums = np.zeros(k)
    np.add.at(sums, y, p[np.arange(len(y)), y])
    result: np.ndarray = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    return result


def confident_joint(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """C (K, K) int64: rows are given labels, columns the confidently predicted class."""
    p, y = _validate(probabilities, labels)
    k = p.shape[1]
    confident = _confident_class(p, per_class_thresholds(p, y))
    joint = np.zeros((k, k), dtype=np.int64)
    seen = confident >= 0
    np.add.at(joint, (y[seen], confident[seen]), 1)
    return joint


def find_label_errors(probabilities: np.ndarray, labels: np.ndarray) -> list[Candidate]:
    """Multiclass candidates (off-diagonal of the confident joint), most likely error first.

    probabilities: (N, K) float in [0, 1], each row out-of-fold (the model never saw the row's
    label). labels: (N,) int in 0..K-1.
    """
    p, y = _validate(probabilities, labels)
    confident = _confident_class(p, per_class_thresholds(p, y))
    rows = np.flatnonzero((confident >= 0) & (confident != y))
    margins = _normalized_margin(p, y)
    order = rows[np.argsort(margins[rows], kind="stable")]
    return [
        Candidate(
            row=int(i),
            given=int(y[i]),
            suggested=int(confident[i]),
            confidence=float(p[i, confident[i]]),
            margin=float(margins[i]),
        )
        for i in order
    ]


def multiclass_probabilities(scores: np.ndarray, *, with_negative: bool) -> np.ndarray:
    """Stored multiclass scores (N, T) -> class probabilities (N, K) for `find_label_errors`.

    The quick head's softmax has a background (Negative) column the stored scores leave out, so
    rows sum to at most 1. With Negative images in the set, the background is a class of its own
    (K = T + 1, its probability 1 - the rest); without, rows are renormalised over the T tags.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, T); got shape {s.shape}.")
    if with_negative:
        rest = np.clip(1.0 - s.sum(axis=1, keepdims=True), 0.0, 1.0)
        return np.concatenate([s, rest], axis=1)
    result: np.ndarray = s / np.maximum(s.sum(axis=1, keepdims=True), _EPS)
    return result


def find_multilabel_errors(probabilities: np.ndarray, targets: np.ndarray) -> list[Candidate]:
    """Multilabel candidates, one per (image, tag) whose presence the model confidently
    disputes, most likely error first across all tags.

    probabilities: (N, T) per-tag probabilities (sigmoid); targets: (N, T) {0, 1}.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(targets)
    if p.ndim != 2 or t.shape != p.shape:
        raise ValueError(
            f"probabilities and targets must both be (N, T); got {p.shape} and {t.shape}."
        )
    if not np.isin(t, (0, 1)).all():
        raise ValueError("targets must be 0 or 1.")
    found: list[Candidate] = []
    for column in range(p.shape[1]):
        two = np.stack([1.0 - p[:, column], p[:, column]], axis=1)
        for c in find_label_errors(two, t[:, column].astype(np.int64)):
            found.append(
                Candidate(c.row, c.given, c.suggested, c.confidence, c.margin, column=column)
            )
    return sorted(found, key=lambda c: (c.margin, c.row, c.column))


def _validate(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (N, K) with K >= 2; got shape {p.shape}.")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must be ({p.shape[0]},); got shape {y.shape}.")
    if not np.isfinite(p).all() or (p < -_EPS).any() or (p > 1 + _EPS).any():
        raise ValueError("probabilities must be finite numbers in [0, 1].")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be integers in 0..{p.shape[1] - 1}.")
    return p, y.astype(np.int64)


def _confident_class(p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N,) the most probable class among those at or above their threshold; -1 if none."""
    above = p >= thresholds[None, :] - _EPS
    masked = np.where(above, p, -np.inf)
    best = masked.argmax(axis=1)
    result: np.ndarray = np.where(above.any(axis=1), best, -1)
    return result


def _normalized_margin(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.arange(len(y))
    given = p[rows, y]
    others = p.copy()
    others[rows, y] = -np.inf
    result: np.ndarray = given - others.max(axis=1)
    return result
