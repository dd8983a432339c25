"""Detection label-error candidates on crafted held-out detections."""

from __future__ import annotations

import numpy as np
import pytest

from training.ml.box_errors import MISPLACED, MISSED, WRONG_TAG, find_box_errors


def _clean_set(n: int = 30) -> tuple[list[list[list[float]]], list[list[list[float]]]]:
    """n images, one box each (tag = row % 2), detected right with probability 0.8-0.95."""
    rng = np.random.default_rng(0)
    truths, dets = [], []
    for row in range(n):
        tag = row % 2
        truths.append([[tag, 0.2, 0.2, 0.3, 0.3]])
        dets.append([[tag, float(rng.uniform(0.8, 0.95)), 0.21, 0.2, 0.3, 0.3]])
    return truths, dets


def test_each_kind_of_disputed_box_is_found_and_clean_images_are_not() -> None:
    truths, dets = _clean_set()
    truths[3] = [[0, 0.2, 0.2, 0.3, 0.3]]  # labeled 0, the model sure it is 1
    dets[3] = [[1, 0.97, 0.2, 0.2, 0.3, 0.3]]
    dets[6] = [*dets[6], [1, 0.96, 0.6, 0.6, 0.3, 0.3]]  # an unlabeled object
    truths[9] = [[1, 0.05, 0.05, 0.2, 0.2]]  # a box drawn off the object
    dets[9] = [[1, 0.97, 0.12, 0.12, 0.2, 0.2]]
    found = find_box_errors(truths, dets, num_tags=2)
    kinds = {(c.row, c.kind) for c in found}
    assert kinds == {(3, WRONG_TAG), (6, MISSED), (9, MISPLACED)}
    wrong = next(c for c in found if c.kind == WRONG_TAG)
    assert (wrong.given_tag, wrong.suggested_tag, wrong.box_index) == (0, 1, 0)
    missed = next(c for c in found if c.kind == MISSED)
    assert missed.suggested_tag == 1 and missed.box == (0.6, 0.6, 0.3, 0.3)


def test_unsure_detections_dispute_nothing() -> None:
    truths, dets = _clean_set()
    dets[6] = [*dets[6], [1, 0.3, 0.6, 0.6, 0.3, 0.3]]  # below tag 1's average self-confidence
    assert find_box_errors(truths, dets, num_tags=2) == []


def test_mismatched_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="same images"):
        find_box_errors([[]], [], num_tags=1)
