"""classification_metrics agrees with scikit-learn to 1e-9, edge cases included."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

from training.ml.metrics import classification_metrics


def check_against_sklearn(y: np.ndarray, scores: np.ndarray, threshold: float, multiclass: bool):
    result = classification_metrics(y, scores, threshold=threshold, multiclass=multiclass)
    json.dumps(result)  # stored on the iteration row as JSON
    hits = (scores >= threshold).astype(int)
    aps, aucs = [], []
    for t, tag in enumerate(result["per_tag"]):
        truth, score = y[:, t], scores[:, t]
        assert tag["precision"] == pytest.approx(
            precision_score(truth, hits[:, t], zero_division=0), abs=1e-9
        )
        assert tag["recall"] == pytest.approx(
            recall_score(truth, hits[:, t], zero_division=0), abs=1e-9
        )
        assert tag["positives"] == int(truth.sum()) and tag["predicted"] == int(hits[:, t].sum())
        if truth.sum() == 0:
            assert tag["ap"] is None
        else:
            aps.append(average_precision_score(truth, score))
            assert tag["ap"] == pytest.approx(aps[-1], abs=1e-9)
        if truth.min() == truth.max():
            assert tag["roc_auc"] is None
        else:
            aucs.append(roc_auc_score(truth, score))
            assert tag["roc_auc"] == pytest.approx(aucs[-1], abs=1e-9)
    # scikit-learn reads a single column as binary (micro would then mean accuracy).
    average = "micro" if y.shape[1] > 1 else "binary"
    truth, hit = (y, hits) if y.shape[1] > 1 else (y[:, 0], hits[:, 0])
    assert result["precision"] == pytest.approx(
        precision_score(truth, hit, average=average, zero_division=0), abs=1e-9
    )
    assert result["recall"] == pytest.approx(
        recall_score(truth, hit, average=average, zero_division=0), abs=1e-9
    )
    assert result["map"] == (pytest.approx(np.mean(aps), abs=1e-9) if aps else None)
    assert result["roc_auc"] == (pytest.approx(np.mean(aucs), abs=1e-9) if aucs else None)
    return result


@pytest.mark.parametrize("seed", range(12))
def test_multilabel_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, t = int(rng.integers(5, 60)), int(rng.integers(1, 6))
    y = (rng.random((n, t)) < rng.uniform(0.1, 0.7)).astype(int)
    scores = rng.random((n, t))
    if seed % 3 == 0:
        scores = np.round(scores, 1)  # many ties
    check_against_sklearn(y, scores, float(rng.uniform(0.2, 0.8)), multiclass=False)


@pytest.mark.parametrize("seed", range(12))
def test_multiclass_random_inputs_and_confusion(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, t = int(rng.integers(8, 60)), int(rng.integers(2, 6))
    classes = rng.integers(0, t + 1, size=n)  # t = background (Negative image)
    y = np.zeros((n, t), dtype=int)
    y[classes < t, classes[classes < t]] = 1
    logits = rng.normal(size=(n, t + 1))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = probs[:, :t]
    threshold = float(rng.uniform(0.2, 0.6))
    result = check_against_sklearn(y, scores, threshold, multiclass=True)
    best = scores.argmax(axis=1)
    predicted = np.where(scores.max(axis=1) >= threshold, best, t)
    expected = confusion_matrix(classes, predicted, labels=list(range(t + 1)))
    assert result["confusion"] == expected.tolist()


def test_edge_cases_tag_never_predicted_and_tag_without_positives() -> None:
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    scores = np.array(
        [[0.9, 0.1, 0.2], [0.2, 0.4, 0.3], [0.7, 0.3, 0.1], [0.1, 0.45, 0.6], [0.6, 0.2, 0.1]]
    )
    result = check_against_sklearn(y, scores, 0.5, multiclass=False)
    never_predicted = result["per_tag"][1]
    assert never_predicted["predicted"] == 0 and never_predicted["precision"] == 0.0
    assert never_predicted["recall"] == 0.0 and never_predicted["ap"] is not None
    no_positives = result["per_tag"][2]
    assert no_positives["positives"] == 0 and no_positives["recall"] == 0.0
    assert no_positives["ap"] is None and no_positives["roc_auc"] is None


def test_all_positive_tag_has_ap_but_no_roc_auc() -> None:
    y = np.array([[1], [1], [1]])
    result = check_against_sklearn(y, np.array([[0.2], [0.9], [0.4]]), 0.5, multiclass=False)
    assert result["per_tag"][0]["ap"] == pytest.approx(1.0)
    assert result["roc_auc"] is None


def test_shape_mismatch_is_explained() -> None:
    with pytest.raises(ValueError, match="both be"):
        classification_metrics(np.zeros((3, 2)), np.zeros((3, 3)), multiclass=False)
