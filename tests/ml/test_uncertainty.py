"""Uncertainty scores: the rules the "Most gain" order and the active-learning picks rely on."""

from __future__ import annotations

import numpy as np
import pytest

from training.ml.uncertainty import classification_uncertainty, detection_uncertainty


def test_close_call_is_more_uncertain_than_a_sure_one() -> None:
    probs = np.array([[0.99, 0.01], [0.51, 0.49]])
    scores = classification_uncertainty(probs, multilabel=False)
    assert scores[1] > scores[0]
    assert scores[1] == pytest.approx(0.98)
    assert scores[0] == pytest.approx(0.02)


def test_multiclass_counts_the_background_class() -> None:
    # 0.5 "cat" and nothing else: torn between cat and background, as unsure as 0.5/0.5.
    probs = np.array([[0.5, 0.0, 0.0], [0.5, 0.5, 0.0], [0.9, 0.05, 0.0]])
    scores = classification_uncertainty(probs, multilabel=False)
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == pytest.approx(1.0)
    assert scores[2] == pytest.approx(0.15)


def test_multilabel_near_threshold_ranks_higher() -> None:
    probs = np.array(
        [
            [0.95, 0.02, 0.99],  # every tag decided
            [0.95, 0.48, 0.99],  # one tag on the fence
            [0.7, 0.2, 0.9],  # in between
        ]
    )
    scores = classification_uncertainty(probs, multilabel=True)
    assert list(np.argsort(-scores)) == [1, 2, 0]
    assert scores[1] == pytest.approx(0.96)


def test_multilabel_threshold_moves_the_fence() -> None:
    probs = np.array([[0.3], [0.6]])
    at_half = classification_uncertainty(probs, multilabel=True, threshold=0.5)
    at_third = classification_uncertainty(probs, multilabel=True, threshold=0.3)
    assert at_half[1] > at_half[0]
    assert at_third[0] == pytest.approx(1.0)
    assert at_third[0] > at_third[1]


def test_scores_stay_in_unit_interval() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random((200, 5))
    softmax = raw / raw.sum(axis=1, keepdims=True)
    for multilabel, probs in ((False, softmax), (False, raw / 5), (True, raw)):
        scores = classification_uncertainty(probs, multilabel=multilabel)
        assert scores.shape == (200,)
        assert (scores >= 0).all() and (scores <= 1).all()


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="probs must be"):
        classification_uncertainty(np.zeros(3), multilabel=False)
    with pytest.raises(ValueError, match="threshold"):
        classification_uncertainty(np.zeros((1, 2)), multilabel=True, threshold=1.0)


def test_detection_least_sure_box_and_empty_images() -> None:
    boxes = [
        [("cat", 0.97, 0.1, 0.1, 0.2, 0.2), ("dog", 0.95, 0.5, 0.5, 0.2, 0.2)],
        [("cat", 0.97, 0.1, 0.1, 0.2, 0.2), ("dog", 0.52, 0.5, 0.5, 0.2, 0.2)],
        [],
        [{"tag": "cat", "probability": 0.5, "left": 0, "top": 0, "width": 1, "height": 1}],
    ]
    scores = detection_uncertainty(boxes, threshold=0.5)
    assert scores[1] > scores[2] > scores[0]
    assert scores[2] == pytest.approx(0.5)
    assert scores[3] == pytest.approx(1.0)


def test_detection_several_doubtful_boxes_beat_one() -> None:
    one = [("a", 0.6, 0, 0, 0.1, 0.1), ("b", 0.99, 0, 0, 0.1, 0.1)]
    three = [("a", 0.6, 0, 0, 0.1, 0.1), ("b", 0.62, 0, 0, 0.1, 0.1), ("c", 0.4, 0, 0, 0.1, 0.1)]
    scores = detection_uncertainty([one, three], threshold=0.5)
    assert scores[1] > scores[0]
    assert scores[1] <= 1.0
