"""Ranking: "Most gain" order (diverse_top) and active-learning picks (select_for_labeling)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from training.ml.ranking import compact_embeddings, diverse_top, kmeans, select_for_labeling
from training.ml.uncertainty import classification_uncertainty


def blobs(
    centers: int, per_blob: int, dim: int = 32, spread: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Tight Gaussian blobs around random directions; returns (points, blob id per point)."""
    rng = np.random.default_rng(seed)
    middles = rng.standard_normal((centers, dim))
    middles /= np.linalg.norm(middles, axis=1, keepdims=True)
    ids = np.repeat(np.arange(centers), per_blob)
    points = middles[ids] + spread * rng.standard_normal((ids.size, dim)) / np.sqrt(dim)
    return points.astype(np.float32), ids


def test_close_call_ranks_above_a_sure_image() -> None:
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((2, 16)).astype(np.float32)
    probs = np.array([[0.99, 0.01], [0.51, 0.49]])
    order = diverse_top(embeddings, classification_uncertainty(probs, multilabel=False), k=2)
    assert list(order) == [1, 0]


def test_two_identical_uncertain_images_are_not_both_on_top() -> None:
    rng = np.random.default_rng(2)
    embeddings = rng.standard_normal((6, 64)).astype(np.float32)
    embeddings[3] = embeddings[0]  # the same image stored twice
    probs = np.array([[0.5, 0.5], [0.8, 0.2], [0.85, 0.15], [0.5, 0.5], [0.9, 0.1], [0.95, 0.05]])
    u = classification_uncertainty(probs, multilabel=False)
    order = diverse_top(embeddings, u, k=6)
    assert order[0] in (0, 3)
    assert {int(order[0]), int(order[1])} != {0, 3}
    # The copy comes last: every distinct image is shown before it.
    assert {int(order[-1])} <= {0, 3}
    assert sorted(order.tolist()) == list(range(6))


def test_first_page_spreads_over_groups_of_near_copies() -> None:
    # Three tight groups of 20 near-copies, all equally uncertain: page one of 3 shows each once.
    points, ids = blobs(3, 20, spread=0.01, seed=3)
    u = np.full(points.shape[0], 0.9) + np.random.default_rng(3).uniform(0, 0.01, 60)
    order = diverse_top(points, u, k=3)
    assert sorted(ids[order].tolist()) == [0, 1, 2]


def test_pure_uncertainty_when_images_are_spread_out() -> None:
    rng = np.random.default_rng(4)
    points = rng.standard_normal((50, 1280)).astype(np.float32)
    u = rng.random(50)
    order = diverse_top(points, u, k=10, diversity=0.0, min_distance_ratio=0.0)
    assert list(order) == list(np.argsort(-u)[:10])


def test_candidates_limit_how_deep_page_one_reaches() -> None:
    points, _ = blobs(1, 30, spread=0.001, seed=5)
    u = np.linspace(1.0, 0.0, 30)
    order = diverse_top(points, u, k=3, candidates=5)
    assert set(order.tolist()) <= set(range(5))


def test_compact_embeddings_keep_the_order_of_distances() -> None:
    points, _ = blobs(10, 20, dim=1280, spread=0.5, seed=6)
    compact = compact_embeddings(points)
    assert compact.shape == (200, 128)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    full = np.linalg.norm(unit[1:] - unit[0], axis=1)
    small = np.linalg.norm(compact[1:] - compact[0], axis=1)
    assert np.corrcoef(full, small)[0, 1] > 0.95
    assert np.array_equal(compact, compact_embeddings(points))  # the same projection every call


def test_diverse_top_is_fast_enough_for_a_page() -> None:
    rng = np.random.default_rng(6)
    compact = compact_embeddings(rng.standard_normal((3000, 1280)).astype(np.float32))
    u = rng.random(3000)
    diverse_top(compact, u, k=50)  # warm up
    started = time.perf_counter()
    order = diverse_top(compact, u, k=50, candidates=3000)
    elapsed = time.perf_counter() - started
    assert len(set(order.tolist())) == 50
    # Typically a few ms; the bound is loose because test machines are shared.
    assert elapsed < 0.5, f"diverse_top took {elapsed * 1000:.0f} ms"


def test_kmeans_finds_separated_blobs() -> None:
    points, ids = blobs(5, 40, seed=7)
    labels, centers = kmeans(points, 5, seed=0)
    assert centers.shape == (5, 32)
    # Every blob maps to exactly one cluster and vice versa.
    pairs = {(int(a), int(b)) for a, b in zip(ids, labels, strict=True)}
    assert len(pairs) == 5


def test_cold_start_picks_land_in_different_blobs() -> None:
    points, ids = blobs(8, 30, seed=8)
    for seed in range(3):
        picks = select_for_labeling(points, labeled_embeddings=None, budget=8, seed=seed)
        assert len(picks) == 8
        assert sorted(ids[picks].tolist()) == list(range(8))


def test_cold_start_avoids_blobs_that_already_hold_labels() -> None:
    points, ids = blobs(6, 30, seed=9)
    labeled = points[ids < 3][::10]  # a few labels in blobs 0, 1, 2 (they stay in the pool too)
    picks = select_for_labeling(points, labeled_embeddings=labeled, budget=3, seed=0)
    assert sorted(ids[picks].tolist()) == [3, 4, 5]


def test_cold_start_takes_the_typical_image_not_an_outlier() -> None:
    points, ids = blobs(2, 40, spread=0.05, seed=10)
    middle = points[ids == 0].mean(axis=0)
    outlier = middle + 0.2 * (points[0] - middle) / np.linalg.norm(points[0] - middle)
    blob = points[ids == 0]
    points = np.concatenate([points, outlier[None, :]]).astype(np.float32)
    picks = select_for_labeling(points, budget=2, seed=0)
    assert 80 not in picks.tolist()
    # The pick from blob 0 is among its most central fifth.
    pick = points[picks][np.argmin(np.linalg.norm(points[picks] - middle, axis=1))]
    spread = np.linalg.norm(blob - middle, axis=1)
    assert np.linalg.norm(pick - middle) <= np.quantile(spread, 0.2)


def test_uncertainty_takes_over_once_labels_are_plenty() -> None:
    points, ids = blobs(4, 25, seed=11)
    labeled = points[::2]  # 50 labels over 2 tags: far past labels_per_tag
    probs = np.tile([0.99, 0.01], (100, 1))
    unsure = np.flatnonzero(ids == 2)[:5]
    probs[unsure] = [0.5, 0.5]
    picks = select_for_labeling(
        points, labeled_embeddings=labeled, pool_probs=probs, budget=5, seed=0, labels_per_tag=5
    )
    assert set(picks.tolist()) == set(unsure.tolist())


def test_select_for_labeling_validates_and_caps_budget() -> None:
    points, _ = blobs(2, 3, seed=12)
    assert len(select_for_labeling(points, budget=50, seed=0)) == 6
    assert len(set(select_for_labeling(points, budget=6, seed=0).tolist())) == 6
    with pytest.raises(ValueError, match="pool_probs"):
        select_for_labeling(points, pool_probs=np.zeros((2, 2)), budget=1, seed=0)
    with pytest.raises(ValueError, match="labeled_embeddings"):
        select_for_labeling(points, labeled_embeddings=np.zeros((1, 5)), budget=1, seed=0)


def test_large_pools_are_sampled_not_refused() -> None:
    points, ids = blobs(5, 4000, dim=64, spread=0.05, seed=13)
    labeled = points[ids == 0][:100]
    probs = np.tile([0.99, 0.01], (points.shape[0], 1))
    unsure = np.flatnonzero(ids == 3)[:10]
    probs[unsure] = [0.5, 0.5]
    started = time.perf_counter()
    picks = select_for_labeling(
        points, labeled_embeddings=labeled, pool_probs=probs, budget=10, seed=0, max_points=2000
    )
    elapsed = time.perf_counter() - started
    assert len(set(picks.tolist())) == 10
    # 100 labels over 2 tags: uncertainty has taken over (one pick per cluster), and the sample
    # kept the unsure images: a plain random sample of 2,000 would keep about one of them.
    assert len(set(picks.tolist()) & set(unsure.tolist())) >= 5
    assert elapsed < 10, f"select_for_labeling took {elapsed:.1f} s on 20,000 images"
