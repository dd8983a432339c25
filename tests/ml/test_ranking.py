"""Ranking: the "Most gain" rule (rank_for_review), its weight and its sampling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from training.ml.ranking import (
    clusters_follow_tags,
    compact_embeddings,
    density_trust,
    kmeans,
    near_chance,
    rank_for_review,
    review_settings,
    review_weight,
)
from training.ml.uncertainty import (
    classification_uncertainty,
    detection_uncertainty,
    doubtful_boxes,
)


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


def test_kmeans_finds_separated_blobs() -> None:
    points, ids = blobs(5, 40, seed=7)
    labels, centers = kmeans(points, 5, seed=0)
    assert centers.shape == (5, 32)
    # Every blob maps to exactly one cluster and vice versa.
    pairs = {(int(a), int(b)) for a, b in zip(ids, labels, strict=True)}
    assert len(pairs) == 5


def test_compact_embeddings_keep_the_order_of_distances() -> None:
    points, _ = blobs(10, 20, dim=1280, spread=0.5, seed=6)
    compact = compact_embeddings(points)
    assert compact.shape == (200, 128)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    full = np.linalg.norm(unit[1:] - unit[0], axis=1)
    small = np.linalg.norm(compact[1:] - compact[0], axis=1)
    assert np.corrcoef(full, small)[0, 1] > 0.95
    assert np.array_equal(compact, compact_embeddings(points))  # the same projection every call


def test_weight_grows_with_quality_and_labels_and_keeps_half_near_chance() -> None:
    assert review_weight(model_quality=0.65, labels_per_tag=50) == pytest.approx(0.857, abs=1e-3)
    # Near chance the features do not follow the tags: coverage buys nothing, doubt decides;
    # a little above it (density not yet trusted) doubt keeps half.
    assert review_weight(model_quality=0.05, labels_per_tag=50) == 1.0
    assert review_weight(model_quality=0.36, labels_per_tag=50) == pytest.approx(0.48)
    assert review_weight(model_quality=0.95, labels_per_tag=2) == pytest.approx(0.2)
    assert review_weight(model_quality=0.95, labels_per_tag=30) == 1.0
    assert review_weight(model_quality=None, labels_per_tag=5) == pytest.approx(0.5)
    middle = review_weight(model_quality=0.525, labels_per_tag=30)
    assert 0.0 < middle < 1.0
    with pytest.raises(ValueError, match="labels_per_tag"):
        review_weight(model_quality=0.5, labels_per_tag=-1)


def test_cold_start_picks_land_in_different_blobs() -> None:
    points, ids = blobs(8, 30, seed=8)
    u = np.random.default_rng(8).random(points.shape[0])
    for seed in range(3):
        ranking = rank_for_review(points, u, weight=0.0, k=8, batch=8, seed=seed)
        assert sorted(ids[ranking.order].tolist()) == list(range(8))
        assert not ranking.for_doubt.any()


def test_coverage_avoids_blobs_that_already_hold_labels() -> None:
    points, ids = blobs(6, 30, seed=9)
    labeled = points[ids < 3][::10]  # a few labels in blobs 0, 1, 2 (they stay in the pool too)
    u = np.zeros(points.shape[0])
    ranking = rank_for_review(points, u, labeled_embeddings=labeled, weight=0.0, k=3, batch=3)
    assert sorted(ids[ranking.order].tolist()) == [3, 4, 5]
    assert not ranking.cluster_labeled.any()


def test_cold_start_takes_the_typical_image_not_an_outlier() -> None:
    points, ids = blobs(2, 40, spread=0.05, seed=10)
    middle = points[ids == 0].mean(axis=0)
    outlier = middle + 0.2 * (points[0] - middle) / np.linalg.norm(points[0] - middle)
    blob = points[ids == 0]
    points = np.concatenate([points, outlier[None, :]]).astype(np.float32)
    u = np.zeros(points.shape[0])
    u[80] = 1.0  # the outlier is the least sure image: a weak model's doubt does not count
    order = rank_for_review(points, u, weight=0.0, k=2, batch=2).order
    assert 80 not in order.tolist()
    pick = points[order][np.argmin(np.linalg.norm(points[order] - middle, axis=1))]
    spread = np.linalg.norm(blob - middle, axis=1)
    assert np.linalg.norm(pick - middle) <= np.quantile(spread, 0.2)


def test_a_good_model_puts_its_doubts_first_one_per_region() -> None:
    points, ids = blobs(4, 25, seed=11)
    probs = np.tile([0.99, 0.01], (100, 1))
    unsure = np.concatenate([np.flatnonzero(ids == 2)[:5], np.flatnonzero(ids == 3)[:5]])
    probs[unsure] = [0.5, 0.5]
    u = classification_uncertainty(probs, multilabel=False)
    ranking = rank_for_review(points, u, weight=1.0, k=2, batch=4)  # 4 clusters: the 4 blobs
    assert set(ranking.order.tolist()) <= set(unsure.tolist())
    assert sorted(ids[ranking.order].tolist()) == [2, 3]  # not two doubts of one region
    assert ranking.for_doubt.all()


def test_without_clusters_the_doubts_come_first_even_from_one_region() -> None:
    points, ids = blobs(4, 25, spread=0.4, seed=11)  # no two points near copies of each other
    probs = np.tile([0.99, 0.01], (100, 1))
    unsure = np.flatnonzero(ids == 2)[:6]  # every doubt in one region
    probs[unsure] = [0.5, 0.5]
    u = classification_uncertainty(probs, multilabel=False)
    spread = rank_for_review(points, u, weight=1.0, k=6, batch=4)
    alone = rank_for_review(points, u, weight=1.0, k=6, batch=4, one_per_cluster=False)
    assert set(spread.order.tolist()) != set(unsure.tolist())  # one per region: 1 doubt, 3 sure
    assert set(alone.order.tolist()) == set(unsure.tolist())  # the doubt alone: margin sampling


def test_clusters_are_used_unless_the_model_is_nearer_chance_than_not() -> None:
    assert not clusters_follow_tags(model_quality=0.1)
    assert not clusters_follow_tags(model_quality=0.32)  # near_chance 0.6
    assert clusters_follow_tags(model_quality=0.33)  # near_chance 0.4
    assert clusters_follow_tags(model_quality=0.8)
    assert clusters_follow_tags(model_quality=None)  # not measured: trusted, as density is


def test_close_call_ranks_above_a_sure_image() -> None:
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((2, 16)).astype(np.float32)
    probs = np.array([[0.99, 0.01], [0.51, 0.49]])
    u = classification_uncertainty(probs, multilabel=False)
    assert rank_for_review(embeddings, u, weight=1.0, k=2).order.tolist() == [1, 0]


def test_a_page_is_a_prefix_of_a_longer_page() -> None:
    points, _ = blobs(10, 20, seed=5)
    u = np.random.default_rng(5).random(points.shape[0])
    for weight in (0.0, 0.5, 1.0):
        short = rank_for_review(points, u, weight=weight, k=20, batch=40, seed=3).order
        long = rank_for_review(points, u, weight=weight, k=100, batch=40, seed=3).order
        assert short.tolist() == long[:20].tolist()
        assert len(set(long.tolist())) == 100


def test_near_copies_are_not_both_on_the_first_page() -> None:
    rng = np.random.default_rng(2)
    embeddings = rng.standard_normal((40, 64)).astype(np.float32)
    embeddings[3] = embeddings[0]  # the same image stored twice
    u = np.full(40, 0.2)
    u[[0, 3]] = 0.9
    order = rank_for_review(embeddings, u, weight=1.0, k=10, batch=10).order
    assert len({0, 3} & set(order.tolist())) == 1


def test_rank_for_review_validates_its_inputs() -> None:
    points, _ = blobs(2, 3, seed=12)
    u = np.zeros(6)
    assert rank_for_review(points, u, weight=0.0, k=50).order.size == 6
    assert rank_for_review(points, u, weight=0.0, k=0).order.size == 0
    with pytest.raises(ValueError, match="uncertainty"):
        rank_for_review(points, np.zeros(5), weight=0.0, k=1)
    with pytest.raises(ValueError, match="labeled_embeddings"):
        rank_for_review(points, u, labeled_embeddings=np.zeros((1, 5)), weight=0.0, k=1)
    with pytest.raises(ValueError, match="weight"):
        rank_for_review(points, u, weight=1.5, k=1)


def test_a_page_of_2000_candidates_ranks_quickly() -> None:
    points, _ = blobs(40, 50, dim=1280, seed=14)
    labeled, _ = blobs(40, 20, dim=1280, seed=15)
    u = np.random.default_rng(14).random(points.shape[0])
    rank_for_review(points[:200], u[:200], weight=0.5, k=40)  # warm up
    started = time.perf_counter()
    ranking = rank_for_review(points, u, labeled_embeddings=labeled, weight=0.5, k=40)
    elapsed = time.perf_counter() - started
    assert ranking.order.size == 40
    assert elapsed < 1.0, f"rank_for_review took {elapsed * 1000:.0f} ms on 2,000 candidates"


def test_density_is_trusted_only_for_a_model_well_above_chance() -> None:
    assert density_trust(model_quality=0.05) == 0.0  # features do not follow the tags
    assert density_trust(model_quality=0.9) == 1.0
    assert density_trust(model_quality=None) == 1.0
    assert 0.0 < density_trust(model_quality=0.5) < 1.0


def test_without_trust_in_density_a_cluster_gives_any_member_not_its_most_typical() -> None:
    points, ids = blobs(4, 60, seed=16)
    u = np.zeros(points.shape[0])
    typical = rank_for_review(points, u, weight=0.0, k=4, batch=4, seed=0)
    spread = [
        rank_for_review(points, u, weight=0.0, density_trust=0.0, k=4, batch=4, seed=s).order
        for s in range(3)
    ]
    assert all(sorted(ids[order].tolist()) == [0, 1, 2, 3] for order in spread)  # still covers
    assert any(set(order.tolist()) != set(typical.order.tolist()) for order in spread)


def test_near_chance_ramps_from_one_to_zero_between_its_floor_and_full() -> None:
    assert near_chance(model_quality=0.1) == 1.0
    assert near_chance(model_quality=0.3) == 1.0
    assert near_chance(model_quality=0.325) == pytest.approx(0.5)
    assert near_chance(model_quality=0.35) == 0.0
    assert near_chance(model_quality=None) == 0.0
    with pytest.raises(ValueError, match="floor"):
        near_chance(model_quality=0.2, floor=0.4, full=0.3)


def detection_page(
    points: np.ndarray,
    boxes: list[list[float]],
    flip: list[float | None] | None,
    *,
    quality: float,
    k: int,
) -> np.ndarray:
    """The first `k` of a detection pool as predictions.services.ranking.gain_order ranks it."""
    settings = review_settings(model_quality=quality, labels_per_tag=4, detection=True)
    doubt, holds = doubtful_boxes(boxes, flip)
    first = holds if settings.objects_first else None
    return rank_for_review(
        points,
        doubt,
        weight=settings.weight,
        density_trust=settings.density_trust,
        one_per_cluster=settings.one_per_cluster,
        first=first,
        k=k,
    ).order


def test_detection_takes_the_images_with_doubtful_boxes_not_the_big_empty_backgrounds() -> None:
    # Four backgrounds of 30 images each, most with no box from the floor up (the detector's
    # faint noise only); two images of each hold two boxes near the threshold.
    points, ids = blobs(4, 30, spread=0.3, seed=21)
    holding = np.concatenate([np.flatnonzero(ids == blob)[:2] for blob in range(4)])
    boxes: list[list[float]] = [[0.06, 0.08] for _ in range(points.shape[0])]
    for row in holding:
        boxes[row] = [0.45, 0.6, 0.07]
    page = detection_page(points, boxes, None, quality=0.45, k=8)
    assert set(page.tolist()) == set(holding.tolist())
    # The rule before issue 14 item 4 (the stored least-sure-box uncertainty, blended with
    # coverage by the classification weight) spent most of this page on empty backgrounds.
    stored = detection_uncertainty([[{"probability": p} for p in b if p >= 0.1] for b in boxes])
    old = rank_for_review(
        points,
        stored,
        weight=review_weight(model_quality=0.45, labels_per_tag=4),
        density_trust=density_trust(model_quality=0.45),
        one_per_cluster=clusters_follow_tags(model_quality=0.45),
        k=8,
    ).order
    assert len(set(old.tolist()) & set(holding.tolist())) < 8


def test_detection_puts_several_doubtful_boxes_before_one_faint_box_found_one_way_round() -> None:
    points, _ = blobs(3, 15, spread=0.3, seed=22)
    boxes: list[list[float]] = [[0.3] for _ in range(45)]  # one faint box, not found mirrored
    flip: list[float | None] = [1.0] * 45
    crowded = [5, 17, 33]  # one in each region
    for row in crowded:  # three objects near the threshold, found both ways round
        boxes[row], flip[row] = [0.4, 0.55, 0.62], 0.05
    page = detection_page(points, boxes, flip, quality=0.6, k=3)
    assert set(page.tolist()) == set(crowded)


def test_a_detector_near_chance_does_not_send_the_images_it_finds_empty_last() -> None:
    points, _ = blobs(1, 20, spread=0.5, seed=23)
    boxes: list[list[float]] = [[0.97] for _ in range(20)]  # one sure box each, found mirrored
    flip: list[float | None] = [0.0] * 20
    boxes[3], flip[3] = [0.12], 1.0  # nothing here, but the mirror image finds something
    _, holds = doubtful_boxes(boxes, flip)
    assert not holds[3] and holds[np.arange(20) != 3].all()
    # A fair model's "nothing here" is believed: the image comes last, below its sure boxes.
    assert detection_page(points, boxes, flip, quality=0.6, k=20)[-1] == 3
    # Near chance it is as likely a miss, and the mirror image's doubt puts it first.
    assert (
        review_settings(model_quality=0.1, labels_per_tag=2, detection=True).objects_first is False
    )
    assert detection_page(points, boxes, flip, quality=0.1, k=20)[0] == 3


def test_doubtful_boxes_sum_the_boxes_near_the_threshold_and_the_flip_by_box_mass() -> None:
    doubt, holds = doubtful_boxes([[0.5], [0.5, 0.5, 0.5], [0.95], [0.09, 0.05], [0.2], []])
    assert doubt[:3] == pytest.approx([1.0, 3.0, 0.1])
    assert doubt[3] == 0.0 and doubt[5] == 0.0  # below the floor: the detector's noise
    assert holds.tolist() == [True, True, True, False, False, False]  # a box from 0.25 up
    # A flip disagreement counts by the box mass it is about: on a faint box it adds little.
    faint, _ = doubtful_boxes([[0.3]], [1.0])
    strong, _ = doubtful_boxes([[0.9, 0.9]], [1.0])
    assert faint[0] == pytest.approx(0.6 + 0.25 * 0.3)
    assert strong[0] == pytest.approx(0.4 + 0.25 * 1.8)
    with pytest.raises(ValueError, match="flip"):
        doubtful_boxes([[0.5]], [0.1, 0.2])
