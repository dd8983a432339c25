"""Confident learning on synthetic sets with known flipped labels."""

from __future__ import annotations

import numpy as np
import pytest

from training.ml.confident_learning import (
    confident_joint,
    find_label_errors,
    find_multilabel_errors,
    per_class_thresholds,
)
from training.ml.quick import train_quick


def _blobs(n_per: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, 16)) * 4
    y = np.repeat(np.arange(classes), n_per)
    x = centres[y] + rng.standard_normal((len(y), 16))
    return x.astype(np.float32), y


def test_thresholds_and_joint_follow_the_paper() -> None:
    p = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 0, 1, 1])
    t = per_class_thresholds(p, y)
    assert t == pytest.approx([0.8, 0.6])
    # Row 3 (labeled 1) has p0 = 0.6 < 0.8 and p1 = 0.4 < 0.6: above no threshold, counted nowhere.
    assert confident_joint(p, y).tolist() == [[1, 0], [0, 1]]
    assert find_label_errors(p, y) == []
    p2 = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.85, 0.15]])
    errors = find_label_errors(p2, y)
    assert [(e.row, e.given, e.suggested) for e in errors] == [(3, 1, 0)]
    assert errors[0].confidence == pytest.approx(0.85)
    assert errors[0].margin == pytest.approx(0.15 - 0.85)


def test_out_of_fold_candidates_find_most_flips_and_few_clean_images() -> None:
    x, y = _blobs(60, 4, seed=1)
    rng = np.random.default_rng(2)
    flipped = rng.choice(len(y), size=24, replace=False)  # 10%
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 4, size=flipped.size)) % 4
    result = train_quick(x, np.eye(4, dtype=np.float32)[noisy], multilabel=False, seed=0)
    errors = find_label_errors(result.oof_scores / result.oof_scores.sum(1, keepdims=True), noisy)
    found = {e.row for e in errors}
    assert len(found & set(flipped.tolist())) >= 0.8 * flipped.size
    assert len(found - set(flipped.tolist())) <= 0.25 * len(found)
    top = [e.row for e in errors[: flipped.size]]
    assert len(set(top) & set(flipped.tolist())) >= 0.7 * flipped.size
    for e in errors:
        if e.row in set(flipped.tolist()):
            assert e.suggested == y[e.row]


def test_multilabel_flags_the_tag_not_the_image() -> None:
    rng = np.random.default_rng(3)
    truth = (rng.random((200, 3)) < 0.4).astype(int)
    p = np.clip(truth * 0.85 + 0.07 + rng.normal(0, 0.04, truth.shape), 0, 1)
    noisy = truth.copy()
    noisy[5, 1] = 1 - noisy[5, 1]
    noisy[17, 2] = 1 - noisy[17, 2]
    errors = find_multilabel_errors(p, noisy)
    assert {(e.row, e.column) for e in errors} == {(5, 1), (17, 2)}
    for e in errors:
        assert e.suggested == truth[e.row, e.column]


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="K >= 2"):
        find_label_errors(np.zeros((3, 1)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="labels must be integers"):
        find_label_errors(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        find_label_errors(np.array([[1.5, 0.0]]), np.array([0]))
