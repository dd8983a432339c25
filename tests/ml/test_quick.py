"""Quick training: k-fold out-of-fold scores, background class, named failures."""

from __future__ import annotations

import numpy as np
import pytest

from training.ml.errors import Cancelled, DatasetTooSmall, TrainingDiverged
from training.ml.quick import (
    C_GRID,
    DEFAULT_SETTING,
    STRONG_C,
    _inner_score,
    candidate_settings,
    fit_head,
    stratified_folds,
    train_quick,
)


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
    # them (D > N) at a fixed weak regularisation, an honest out-of-fold score is no better
    # than chance.
    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 200)).astype(np.float32)
    labels = rng.integers(0, 2, size=60)
    targets = np.eye(2, dtype=np.float32)[labels]
    result = train_quick(features, targets, multilabel=False, seed=0, c=1.0)
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


def test_inner_cv_picks_a_smaller_c_on_noisy_data_than_on_clean_separable_data() -> None:
    # Clean: well-separated blobs, any weak regularisation is free. Noisy: few images, many
    # dimensions, a third of the labels flipped; a weak penalty memorises the noise.
    features, targets, _ = blobs(20, 3, dim=20, spread=0.5)
    clean = train_quick(features, targets, multilabel=False, seed=0)
    rng = np.random.default_rng(5)
    noisy_features, _, labels = blobs(20, 3, dim=200, spread=4.0, seed=5)
    flip = rng.random(len(labels)) < 0.33
    labels = np.where(flip, rng.integers(0, 3, size=len(labels)), labels)
    noisy = train_quick(
        noisy_features, np.eye(3, dtype=np.float32)[labels], multilabel=False, seed=0
    )
    assert noisy.selection.final.c < clean.selection.final.c
    assert noisy.selection.final.c <= C_GRID[1]
    assert clean.selection.final.c >= C_GRID[-2]


def test_class_weighting_raises_the_minority_recall_of_a_1_to_10_set() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.zeros(200, dtype=int), np.ones(20, dtype=int)]
    features = rng.normal(size=(220, 10)).astype(np.float32)
    features[:, 0] += 1.5 * labels  # overlapping classes: the rare one is easy to give up on
    targets = np.eye(2, dtype=np.float32)[labels]
    chosen = train_quick(features, targets, multilabel=False, seed=0)
    assert chosen.selection.final.balanced
    assert any(setting.balanced for setting in chosen.selection.settings)
    plain = train_quick(features, targets, multilabel=False, seed=0, c=chosen.selection.final.c)

    def minority_recall(result) -> float:  # type: ignore[no-untyped-def]
        return float((result.oof_scores[labels == 1].argmax(axis=1) == 1).mean())

    assert minority_recall(chosen) >= minority_recall(plain) + 0.2
    # Balanced data never tries weighting (it would double the fits for nothing).
    balanced_features, balanced_targets, _ = blobs(15, 3)
    even = train_quick(balanced_features, balanced_targets, multilabel=False)
    assert not any(setting.balanced for setting in even.selection.settings)


def test_inner_selection_of_a_fold_never_uses_that_folds_labels() -> None:
    # Shuffle the labels inside fold 0 only (class counts unchanged): fold 0's choice of C and
    # its out-of-fold scores must not move, since neither its head nor its inner CV may see
    # those labels, while the other folds (whose inner CVs do use fold 0) are affected.
    features, targets, labels = blobs(20, 4, dim=40, spread=3.0, seed=7)
    fold_of = stratified_folds(targets, 5, seed=0)
    honest = train_quick(features, targets, multilabel=False, fold_of=fold_of)
    rng = np.random.default_rng(0)
    shuffled = labels.copy()
    in_fold = np.flatnonzero(fold_of == 0)
    shuffled[in_fold] = rng.permutation(labels[in_fold])
    assert (shuffled != labels).sum() >= 8
    corrupted = train_quick(
        features, np.eye(4, dtype=np.float32)[shuffled], multilabel=False, fold_of=fold_of
    )
    np.testing.assert_array_equal(honest.selection.inner_loss[0], corrupted.selection.inner_loss[0])
    assert honest.selection.per_fold[0] == corrupted.selection.per_fold[0]
    np.testing.assert_array_equal(honest.oof_scores[in_fold], corrupted.oof_scores[in_fold])
    # The test can fail: the other folds' inner losses did see fold 0's labels.
    assert not np.allclose(honest.selection.inner_loss[1:], corrupted.selection.inner_loss[1:])


def test_inner_cv_fits_one_head_per_pair_of_folds_and_setting() -> None:
    features, targets, _ = blobs(10, 2)
    result = train_quick(features, targets, multilabel=False)
    k = len(np.unique(result.fold_of))
    # Each fold's row sums the losses of the k - 1 heads trained without it and one other fold.
    assert result.selection.inner_loss.shape == (k, len(result.selection.settings))
    assert (result.selection.inner_loss > 0).all()


def test_the_strongest_penalty_is_tried_only_with_enough_images_of_every_class() -> None:
    def grid(per_class: list[int]) -> list[float]:
        labels = np.repeat(np.arange(len(per_class)), per_class)
        targets = np.eye(len(per_class), dtype=np.float32)[labels]
        return [setting.c for setting in candidate_settings(targets, multilabel=False)]

    assert grid([25, 25, 25]) == [*STRONG_C, *C_GRID]
    assert grid([6, 6, 6]) == list(C_GRID)  # the 18 plain colours of test_training_e2e.py
    assert grid([20, 20, 9]) == list(C_GRID)
    # Multilabel: each tag's positives and negatives count as classes.
    tags = np.zeros((30, 2), dtype=np.float32)
    tags[:15, 0] = 1
    tags[:12, 1] = 1
    assert [s.c for s in candidate_settings(tags, multilabel=True)] == [*STRONG_C, *C_GRID]
    tags[:25, 1] = 1  # 5 images without the second tag (imbalanced: weighted settings too)
    tried = candidate_settings(tags, multilabel=True)
    assert [s.c for s in tried if not s.balanced] == [s.c for s in tried if s.balanced]
    assert [s.c for s in tried if not s.balanced] == list(C_GRID)


def test_two_folds_fall_back_to_the_default_setting() -> None:
    features, targets, _ = blobs(10, 2)
    keep = np.r_[0:10, 10:12]  # the second tag has 2 images -> 2 folds, no inner CV possible
    result = train_quick(features[keep], targets[keep], multilabel=False)
    assert result.selection.final == DEFAULT_SETTING


def test_multilabel_inner_cv_runs_and_scores_well() -> None:
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, size=(60, 3)).astype(np.float32)
    features = (targets @ rng.normal(scale=3.0, size=(3, 16)) + rng.normal(size=(60, 16))).astype(
        np.float32
    )
    result = train_quick(features, targets, multilabel=True, seed=0)
    assert result.selection.final.c in C_GRID
    assert ((result.oof_scores >= 0.5) == targets.astype(bool)).mean() >= 0.9


def test_fit_head_in_the_row_space_equals_the_full_space_optimum() -> None:
    # Fewer images than dimensions: the fit runs on SVD coordinates; the folded-back head must
    # give the same probabilities as a fit in all dimensions (reached by padding rows so the
    # basis is not used: tripling every image with C scaled to match keeps the same optimum).
    features, targets, _ = blobs(8, 3, dim=60, spread=2.0)
    small, _, _ = fit_head(features, targets, multilabel=False, c=0.1, max_iter=500)
    many, many_targets = np.concatenate([features] * 3), np.concatenate([targets] * 3)
    # N triples, and the (n - 1) std shrinks the standardised features by sqrt(69 / 71).
    same_c = 0.1 / 3 * 69 / 71
    big, _, _ = fit_head(many, many_targets, multilabel=False, c=same_c, max_iter=500)
    np.testing.assert_allclose(
        small.probabilities(features), big.probabilities(features), atol=2e-3
    )


def test_inner_score_ranks_settings_by_mistakes_before_log_loss() -> None:
    # A weakly regularised head: one image confidently wrong (a large log loss). A strongly
    # regularised one: unsure about everything, three images wrong by a hair. The inner CV must
    # prefer the head that makes fewer mistakes (what accuracy and the per-tag figures count);
    # the log loss alone prefers the unsure head, which cost 2-4 points on weak features.
    features = np.eye(4, dtype=np.float64)
    targets = np.eye(2, dtype=np.float32)[[0, 0, 1, 1]]
    bias = np.zeros(3)
    # Identity features: column i of a head is image i's logits (tag 0, tag 1, background).
    confident = np.array([[9.0, 9.0, 0.0, 9.0], [0.0, 0.0, 9.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    unsure = np.array([[0.0, 0.1, 0.1, 0.1], [0.1, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    for name, head in (("confident", confident), ("unsure", unsure)):
        logits = features @ head.T
        wrong = (logits.argmax(axis=1) != [0, 0, 1, 1]).sum()
        assert wrong == {"confident": 1, "unsure": 3}[name]
    assert _inner_score(confident, bias, features, targets, False) < _inner_score(
        unsure, bias, features, targets, False
    )
    assert _balanced_log_loss_of(confident, features, targets) > _balanced_log_loss_of(
        unsure, features, targets
    )


def _balanced_log_loss_of(weight: np.ndarray, features: np.ndarray, targets: np.ndarray) -> float:
    logits = features @ weight.T
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    labels = targets.argmax(axis=1)
    loss = -log_p[np.arange(len(labels)), labels]
    return float(np.mean([loss[labels == c].mean() for c in np.unique(labels)]))


def test_a_levels_embeddings_blocks_are_weighed_up_against_its_last_map(monkeypatch) -> None:
    """The signal only in the blocks' part (the values before the last 1,280), the last map's
    part noise: the head finds it because that part's penalty is LEVELS_WEIGHT^2 times weaker;
    weighed like the rest it is drowned by the 1,280 noise columns."""
    import training.ml.quick as quick

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))

    def draw(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(3), per_class)
        blocks = centres[labels] + rng.normal(size=(len(labels), 16))
        last_map = rng.normal(size=(len(labels), 1280))
        return np.concatenate([blocks, last_map], axis=1).astype(np.float32), labels

    features, labels = draw(20)
    held_out, held_labels = draw(100)
    targets = np.eye(3, dtype=np.float32)[labels]

    def accuracy() -> float:
        head, _, _ = fit_head(features, targets, multilabel=False, c=0.25)
        return float((head.probabilities(held_out).argmax(axis=1) == held_labels).mean())

    weighed = accuracy()
    monkeypatch.setattr(quick, "head_column_scale", lambda dim: np.ones(dim))
    assert weighed >= 0.9 and accuracy() < 0.7
