"""Quick training: k-fold out-of-fold scores, background class, named failures."""

from __future__ import annotations

import numpy as np
import pytest

from training.ml.errors import Cancelled, DatasetTooSmall, TrainingDiverged
from training.ml.quick import fit_head, train_quick


def blobs(n_per_class: int, classes: int, dim: int = 32, seed: int = 0, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    features = centres[labels] + rng.normal(scale=spread, size=(len(labels), dim))
    return features.astype(np.float32), np.eye(classes, dtype=np.float32)[labels], labels


def test_separable_multiclass_reaches_high_kfold_accuracy() -> None:
    features, targets, labels = blobs(20, 4)
    result = train_quick(features, targets, multilabel=False, seed=0)
    assert result.oof_scores.shape == (80, 4) and result.oof_scores.dtype == np.float32
    assert (result.oof_scores.argmax(axis=1) == labels).mean() >= 0.9
    assert sorted(np.unique(result.fold_of)) == [0, 1, 2, 3, 4]
    assert np.isfinite(result.final_loss) and result.epochs > 0
    # The final head, trained on everything, classifies the training data.
    assert (result.head.probabilities(features).argmax(axis=1) == labels).mean() == 1.0


def test_out_of_fold_scores_come_from_models_that_never_saw_the_image() -> None:
    # Random features with random labels: a model scoring its own training images memorises
    # them (D > N), an honest out-of-fold score is no better than chance.
    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 200)).astype(np.float32)
    labels = rng.integers(0, 2, size=60)
    targets = np.eye(2, dtype=np.float32)[labels]
    result = train_quick(features, targets, multilabel=False, seed=0)
    assert (result.head.probabilities(features).argmax(axis=1) == labels).mean() == 1.0
    assert (result.oof_scores.argmax(axis=1) == labels).mean() < 0.75
    # Each held-out row equals a refit without its fold.
    fold = 2
    held_out = result.fold_of == fold
    head, _, _ = fit_head(features[~held_out], targets[~held_out], multilabel=False)
    np.testing.assert_allclose(
        result.oof_scores[held_out], head.probabilities(features[held_out]), atol=1e-5
    )


def test_fold_count_follows_the_smallest_tag() -> None:
    features, targets, _ = blobs(10, 3)
    keep = np.r_[0:10, 10:20, 20:23]  # the third tag has 3 images -> 3 folds
    result = train_quick(features[keep], targets[keep], multilabel=False)
    assert sorted(np.unique(result.fold_of)) == [0, 1, 2]
    for fold in range(3):  # stratified: every fold holds one image of the small tag
        assert targets[keep][result.fold_of == fold, 2].sum() == 1


def test_negative_images_train_a_background_class_that_is_never_reported() -> None:
    features, targets, labels = blobs(15, 3)
    targets[labels == 2] = 0  # the third blob is "Negative": all-zeros rows
    result = train_quick(features, targets[:, :2], multilabel=False)
    assert result.oof_scores.shape == (45, 2)
    assert result.head.weight.shape[0] == 3  # two tags + background
    negatives = result.oof_scores[labels == 2]
    assert negatives.max(axis=1).mean() < 0.2  # "none of these" for the Negative images
    positives = result.oof_scores[labels < 2]
    assert (positives.argmax(axis=1) == labels[labels < 2]).mean() >= 0.9


def test_multilabel_sigmoid_per_tag() -> None:
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, size=(60, 3)).astype(np.float32)
    targets[:3] = 0  # a few Negative images: all zeros
    features = (targets @ rng.normal(scale=3.0, size=(3, 16)) + rng.normal(size=(60, 16))).astype(
        np.float32
    )
    result = train_quick(features, targets, multilabel=True, seed=0)
    assert result.head.weight.shape[0] == 3
    assert ((result.oof_scores >= 0.5) == targets.astype(bool)).mean() >= 0.9


def test_nan_feature_raises_training_diverged() -> None:
    features, targets, _ = blobs(10, 2)
    features[4, 7] = np.nan
    with pytest.raises(TrainingDiverged):
        train_quick(features, targets, multilabel=False)


def test_a_tag_with_one_image_is_too_small() -> None:
    features, targets, _ = blobs(10, 2)
    with pytest.raises(DatasetTooSmall, match="at least 2 images"):
        train_quick(features[:11], targets[:11], multilabel=False)


def test_should_stop_cancels() -> None:
    features, targets, _ = blobs(10, 2)
    with pytest.raises(Cancelled):
        train_quick(features, targets, multilabel=False, should_stop=lambda: True)


def test_bad_shapes_are_explained() -> None:
    with pytest.raises(ValueError, match="targets must be"):
        train_quick(np.zeros((4, 3)), np.zeros((5, 2)), multilabel=False)
