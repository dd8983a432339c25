"""Which stored predictions a reviewer should look at first: the "Most gain" order.

One rule serves the Predictions tab, the API's "most gain" sort and bench/active_learning.py
(through predictions.services.ranking, which reads the rows and calls `rank_for_review`).

Inputs: each candidate's embedding (pooled backbone features), its uncertainty
(training.ml.uncertainty), the embeddings of the images already labeled (the iteration's training
set), and a blend weight from the model's own signals (`review_weight`). Embeddings are compared
by the Euclidean distance of their L2-normalised vectors (a monotone function of cosine
similarity), on a fixed 128-d random projection (`compact_embeddings`).

Why a blend: with few labels or a weak model, a frozen-feature model's uncertainty is unreliable,
and picking by it does worse than random: the least sure images of a weak model sit in sparse,
atypical parts of the pool (about 85% of them were images it got wrong, measured on a hard set)
and teach it little. Picking typical images of regions no label covers yet does better
(TypiClust, Hacohen et al., 2022). Once the model is good, its doubts are worth a label, weighted
by how representative the image is (density-weighted uncertainty) and spread one per cluster
(cluster-margin, Citovsky et al., 2021), so the page is not twenty near-copies nor twenty outliers.

review_weight(model_quality, labels_per_tag) -> w in [0, 1]
    ``min(labels_per_tag / labels_for_full_weight, (quality - quality_floor) / (quality_full -
    quality_floor))`` clipped to [0, 1], at least ``(1 - density_trust) / 2``, and at least
    `near_chance` (1 for a model at quality 0.3 or below: its doubt decides alone). Quality is
    the iteration's held-out accuracy above chance (0 = chance, 1 = perfect).

density_trust(model_quality) -> t in [0, 1]
    How far a cluster's most typical image beats any of its members. Density only helps where
    the feature space follows the tags; a model near chance says it does not (the hard bench
    set: digits on photographs, clusters = backgrounds). Then picks are a spread sample (a
    random member of each uncovered cluster) and the doubt keeps half the weight; nearer chance
    still (`near_chance`), the doubt has all of it: coverage of clusters that do not follow the
    tags teaches nothing, and margin sampling beat random there over 20 seeds.

clusters_follow_tags(model_quality) -> bool
    False nearer chance than not: then the page is the best scores in order (the doubt alone,
    or near the ramp's middle the doubt blended with a random draw), not one per cluster.

rank_for_review(embeddings, uncertainty, labeled_embeddings=..., weight=w, k=...)
    1. Cluster candidates + labeled embeddings with k-means (k-means++ seeding) into
       ``|labeled| + batch`` clusters (at most `max_clusters`, and at most one per
       `min_cluster_size` points). `batch` is fixed (a page), not `k`, so the order is the same
       however many rows a caller asks for: page one of 20 is the first half of page one of 40.
    2. Typicality = 1 / mean distance to the `typicality_neighbours` nearest points of the same
       cluster (a density estimate).
    3. Each candidate's score ``(1 - w) * member score + w * uncertainty rank``, the member
       score ``t * typicality rank in its cluster + (1 - t) * a seeded random draw`` (t =
       `density_trust`; ranks scaled to [0, 1]).
    4. (With `one_per_cluster`; without it, the best scores in order.) Clusters are visited by
       priority ``(1 - w) * (open + size rank / 2) + w * best score``
       (open = holds no labeled image, so at w = 0 every open cluster comes before a covered
       one, largest first) and each gives its best-scoring candidate. When the clusters run out,
       the best remaining scores follow.
    5. A near copy of an image earlier in the order (closer than `duplicate_distance` on the unit
       sphere: a re-encoded or resized copy) moves to the end.
    Each pick carries why it was chosen: for the model's doubt (w > 0.5) or for its cluster (with
    the cluster's size and whether any labeled image is in it).

Detection (`review_settings(detection=True)`): the doubt is an image's doubtful boxes
(training.ml.uncertainty.doubtful_boxes: the closeness to the threshold summed over its
boxes from 0.1 up, plus the flip disagreement weighted by its box mass), at full weight;
the clusters only spread the page (each gives its most doubtful image), and images with no
box from half the threshold up ("predicted empty") come after all others (`first`), unless
the model is nearer chance than not.

At scale the caller ranks a sample (predictions.services.ranking reads at most 1,000 open
predictions: the least sure share ``w / 2`` and an even spread of the rest); k-means and
typicality keep the density structure of such a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_PROJECT_DIM = 128
_EPS = 1e-12


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    result: np.ndarray = (x / np.maximum(norms, _EPS)).astype(np.float32, copy=False)
    return result


def _projection_matrix(d: int, dim: int) -> np.ndarray:
    # Seeded by the shapes: every process and every call projects a given width the same way,
    # so compact embeddings stored months apart stay comparable.
    rng = np.random.default_rng(d * 100_003 + dim)
    result: np.ndarray = rng.standard_normal((d, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    return result


def compact_embeddings(embeddings: np.ndarray, dim: int = _PROJECT_DIM) -> np.ndarray:
    """(N, D) features -> (N, min(D, dim)) float32 with the same ranking distances (see docstring).

    Rows are L2-normalised, then multiplied by a fixed Gaussian random matrix; narrower inputs are
    only normalised.
    """
    x = _check_embeddings("embeddings", embeddings)
    unit = _unit_rows(x)
    if unit.shape[1] <= dim:
        return unit
    result: np.ndarray = unit @ _projection_matrix(unit.shape[1], dim)
    return result


def _sq_dist_to(points: np.ndarray, point: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.maximum(sq_norms - 2.0 * (points @ point) + point @ point, 0.0)
    return result


def _check_embeddings(name: str, embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, D); got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite numbers.")
    return x


def kmeans(
    points: np.ndarray, n_clusters: int, *, seed: int = 0, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding: returns (labels (N,), centers (K, D)).

    An empty cluster is re-seeded at the point farthest from its center, so all K stay in use.
    """
    x = np.asarray(points, dtype=np.float32)
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be between 1 and {n}; got {n_clusters}.")
    rng = np.random.default_rng(seed)
    sq_norms = np.einsum("ij,ij->i", x, x)
    centers = _kmeans_plus_plus(x, sq_norms, n_clusters, rng)
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(max_iter):
        sq = sq_norms[:, None] - 2.0 * (x @ centers.T) + np.einsum("ij,ij->i", centers, centers)
        new_labels = sq.argmin(axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
        own = sq[np.arange(n), labels]
        for cluster in np.flatnonzero(~filled):
            far = int(own.argmax())
            centers[cluster] = x[far]
            own[far] = -1.0
    return labels, centers


def _kmeans_plus_plus(
    x: np.ndarray, sq_norms: np.ndarray, n_clusters: int, rng: np.random.Generator
) -> np.ndarray:
    n = x.shape[0]
    centers = np.empty((n_clusters, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = _sq_dist_to(x, x[first], sq_norms)
    for i in range(1, n_clusters):
        total = float(closest.sum())
        # Fewer distinct points than clusters: any point will do, duplicates are harmless.
        choice = int(rng.integers(n)) if total <= _EPS else int(rng.choice(n, p=closest / total))
        centers[i] = x[choice]
        closest = np.minimum(closest, _sq_dist_to(x, x[choice], sq_norms))
    return centers


def typicality(points: np.ndarray, labels: np.ndarray, *, neighbours: int = 20) -> np.ndarray:
    """1 / mean distance to the `neighbours` nearest points of the same cluster (0 if alone)."""
    x = np.asarray(points, dtype=np.float32)
    result = np.zeros(x.shape[0], dtype=np.float64)
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        if members.size < 2:
            continue
        m = x[members]
        sq_norms = np.einsum("ij,ij->i", m, m)
        sq = np.maximum(sq_norms[:, None] - 2.0 * (m @ m.T) + sq_norms[None, :], 0.0)
        np.fill_diagonal(sq, np.inf)
        nn = min(neighbours, members.size - 1)
        nearest = np.sqrt(np.partition(sq, nn - 1, axis=1)[:, :nn])
        result[members] = 1.0 / (nearest.mean(axis=1) + 1e-6)
    return result


def _rank01(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (1 = largest); a single value ranks 1."""
    if values.size <= 1:
        return np.ones(values.size)
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    result: np.ndarray = ranks / (values.size - 1)
    return result


@dataclass(frozen=True)
class Ranking:
    """The first `k` candidates in review order, and why each was picked."""

    order: np.ndarray  # (k,) int64 indices into the candidates, best first
    for_doubt: np.ndarray  # (k,) bool: picked for the model's doubt, else as a typical image
    cluster_size: np.ndarray  # (k,) int64 candidates in the pick's cluster, the pick included
    cluster_labeled: np.ndarray  # (k,) bool: some labeled image is in the pick's cluster
    weight: float  # the blend used: 0 = coverage only, 1 = uncertainty first
    density_trust: float  # 1 = a cluster's most typical image first, 0 = any of its members


def density_trust(*, model_quality: float | None, floor: float = 0.35, full: float = 0.6) -> float:
    """How far a cluster's most typical image is preferred over any of its members.

    Density in the backbone's feature space helps only where that space follows the tags. When
    it does not (the hard benchmark set: digits on photographs, where clusters are backgrounds
    and a model stays near chance), the most typical image of a cluster is the one whose mark
    moves the features least, and picking it did worse than random (-3.6 points at 220 labels);
    a random member of each uncovered cluster is a stratified random sample, which random
    sampling cannot beat on average. `model_quality` None (not measured) trusts density fully.
    """
    if model_quality is None:
        return 1.0
    return float(np.clip((float(model_quality) - floor) / (full - floor), 0.0, 1.0))


def near_chance(*, model_quality: float | None, floor: float = 0.3, full: float = 0.35) -> float:
    """How near chance the model is: 1 at or below `floor`, 0 from `full` on (None: 0).

    Below `full` density is not trusted at all (`density_trust`): the feature space does not
    follow the tags, so coverage and typicality say nothing about what a label would teach, and
    the model's own doubt is the only signal left. Measured on the hard bench set (a model at
    quality 0.07-0.3 for 220 labels), plain margin sampling was ahead of random at every round
    over 18 seeds, while the spread sample with the doubt at half weight was level with random
    (bench/RESULTS.md, issue 14). `floor` < `full` so the switch is a ramp, not a step.
    """
    if model_quality is None:
        return 0.0
    if not 0.0 <= floor < full:
        raise ValueError("floor must be at least 0 and below full.")
    return float(np.clip((full - float(model_quality)) / (full - floor), 0.0, 1.0))


def clusters_follow_tags(*, model_quality: float | None) -> bool:
    """Whether "Most gain" takes one pick per cluster (else the best scores, clusters unused).

    False when the model is nearer chance than not (`near_chance` above 1/2): the feature
    space's clusters then do not follow the tags, so spreading the page over them only dilutes
    the model's doubt with a stratified random sample. Measured on the hard bench set (5 seeds,
    10 rounds): one doubt per cluster was 3.1 points behind random at 60 labels and never
    reached random's 220-label accuracy; the doubt alone (margin sampling) was 1.2 points behind
    at worst and reached it with 209 labels (bench/RESULTS.md, issue 14).
    """
    return near_chance(model_quality=model_quality) <= 0.5


def review_weight(
    *,
    model_quality: float | None,
    labels_per_tag: float,
    labels_for_full_weight: float = 10.0,
    quality_floor: float = 0.35,
    quality_full: float = 0.7,
) -> float:
    """How far "Most gain" trusts the model's doubt over coverage (rule: module docstring).

    `model_quality` is the held-out accuracy above chance in [0, 1]; None (not measured) counts
    as a good model, so only the labels per tag decide.
    """
    if labels_per_tag < 0:
        raise ValueError(f"labels_per_tag must not be negative; got {labels_per_tag}.")
    if not 0.0 <= quality_floor < quality_full:
        raise ValueError("quality_floor must be at least 0 and below quality_full.")
    by_labels = labels_per_tag / labels_for_full_weight
    by_quality = 1.0
    if model_quality is not None:
        by_quality = (float(model_quality) - quality_floor) / (quality_full - quality_floor)
    weight = float(np.clip(min(by_labels, by_quality), 0.0, 1.0))
    # Where density is not trusted (features that do not follow the tags), coverage buys little
    # and the doubt keeps at least half the say; near chance it has all of it (`near_chance`).
    # Measured on the hard bench set, 18 seeds: a spread sample with the doubt at half weight
    # was level with random, margin sampling ahead (bench/RESULTS.md, issue 14).
    return max(
        weight,
        0.5 * (1.0 - density_trust(model_quality=model_quality)),
        near_chance(model_quality=model_quality),
    )


@dataclass(frozen=True)
class ReviewSettings:
    """How `rank_for_review` is called for one model (`review_settings`)."""

    weight: float
    density_trust: float
    one_per_cluster: bool
    objects_first: bool  # detection: images expected to hold objects before those predicted empty


def review_settings(
    *, model_quality: float | None, labels_per_tag: float, detection: bool = False
) -> ReviewSettings:
    """The blend, the trust in density and the use of clusters for a model (module docstring).

    Classification: `review_weight`, `density_trust` and `clusters_follow_tags`. Detection: the
    doubt is the image's doubtful boxes (training.ml.uncertainty.doubtful_boxes) at full
    weight, clusters only spread the page (each gives its most doubtful image, the clusters
    visited by it), and images expected to hold objects come first unless the model is nearer
    chance than not (then "nothing there" is as likely a miss). Why: a detector learns from
    boxes, and pooled image embeddings describe the background more than the 0-3 objects on
    it; measured on the bench's detection set, the spread sample of coverage picked images
    holding fewer objects than random did, and product was 11 points behind at 30 images
    (bench/RESULTS.md, issue 14 item 4).
    """
    if detection:
        return ReviewSettings(
            weight=1.0,
            density_trust=density_trust(model_quality=model_quality),
            one_per_cluster=True,
            objects_first=near_chance(model_quality=model_quality) <= 0.5,
        )
    return ReviewSettings(
        weight=review_weight(model_quality=model_quality, labels_per_tag=labels_per_tag),
        density_trust=density_trust(model_quality=model_quality),
        one_per_cluster=clusters_follow_tags(model_quality=model_quality),
        objects_first=False,
    )


def rank_for_review(
    embeddings: np.ndarray,
    uncertainty: np.ndarray,
    *,
    labeled_embeddings: np.ndarray | None = None,
    weight: float,
    density_trust: float = 1.0,
    k: int,
    batch: int = 40,
    seed: int = 0,
    typicality_neighbours: int = 20,
    max_clusters: int = 300,
    min_cluster_size: int = 3,
    duplicate_distance: float = 0.1,
    max_labeled: int = 2000,
    one_per_cluster: bool = True,
    first: np.ndarray | None = None,
) -> Ranking:
    """The first min(k, N) of N candidates in "Most gain" order (rule: module docstring).

    embeddings (N, D) float, any scale; uncertainty (N,) in [0, 1] (any non-negative scale: only
    its order counts); labeled_embeddings (M, D) in the same feature space (or None); weight in
    [0, 1] from `review_weight`; `one_per_cluster` from `clusters_follow_tags` (False: the best
    scores in order, clusters play no part). `first` (N,) bool: these candidates come before
    all others, ranked among themselves (a detector's images expected to hold objects,
    `review_settings`); the clusters are found over all of them.
    """
    x = _check_embeddings("embeddings", embeddings)
    n, d = x.shape
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.shape != (n,):
        raise ValueError(f"uncertainty must be ({n},); got shape {u.shape}.")
    ahead = None if first is None else np.asarray(first, dtype=bool)
    if ahead is not None and ahead.shape != (n,):
        raise ValueError(f"first must be ({n},); got shape {ahead.shape}.")
    labeled = (
        np.zeros((0, d), dtype=np.float32)
        if labeled_embeddings is None
        else _check_embeddings("labeled_embeddings", labeled_embeddings)
    )
    if labeled.shape[1] != d:
        raise ValueError(f"labeled_embeddings must be (M, {d}); got shape {labeled.shape}.")
    if not 0.0 <= weight <= 1.0 or not 0.0 <= density_trust <= 1.0:
        raise ValueError(
            f"weight and density_trust must be in [0, 1]; got {weight}, {density_trust}."
        )
    if k < 0 or batch < 1:
        raise ValueError(f"k must be at least 0 and batch at least 1; got {k} and {batch}.")
    k = min(k, n)
    if k == 0:
        return _empty_ranking(weight)
    rng = np.random.default_rng(seed)
    if labeled.shape[0] > max_labeled:
        labeled = labeled[np.sort(rng.choice(labeled.shape[0], size=max_labeled, replace=False))]
    points = compact_embeddings(np.concatenate([x, labeled]))
    # At least `min_cluster_size` images a cluster on average: on a small pool, one cluster per
    # image would make every image "typical" of nothing.
    clusters = min(
        labeled.shape[0] + batch, max_clusters, max(1, points.shape[0] // min_cluster_size)
    )
    labels, _ = kmeans(points, clusters, seed=seed)
    density = typicality(points, labels, neighbours=typicality_neighbours)[:n]
    # Within a cluster: its most typical images, or (trusting density less) any of them.
    member_score = density_trust * _rank01_within(density, labels[:n]) + (
        1.0 - density_trust
    ) * rng.random(n)
    covered = np.zeros(clusters, dtype=bool)
    covered[labels[n:]] = True
    score = weight * _rank01(u) + (1.0 - weight) * member_score
    # The candidates to rank first (all of them unless `first` says otherwise), then the rest
    # in score order.
    lead = np.arange(n) if ahead is None else np.flatnonzero(ahead)
    if one_per_cluster:
        order = lead[_order(labels[lead], covered, score[lead], weight, lead.size)]
    else:
        order = lead[np.argsort(-score[lead], kind="stable")]
    if ahead is not None:
        rest = np.flatnonzero(~ahead)
        order = np.concatenate([order, rest[np.argsort(-score[rest], kind="stable")]])
    order = order.astype(np.int64)
    order = _duplicates_last(points[:n], order, duplicate_distance)[:k]
    sizes = np.bincount(labels[:n], minlength=clusters)
    return Ranking(
        order=order,
        for_doubt=np.full(order.size, weight > 0.5),
        cluster_size=sizes[labels[order]].astype(np.int64),
        cluster_labeled=covered[labels[order]],
        weight=weight,
        density_trust=density_trust,
    )


def _empty_ranking(weight: float) -> Ranking:
    none = np.zeros(0, dtype=np.int64)
    return Ranking(none, none.astype(bool), none, none.astype(bool), weight, 1.0)


def _duplicates_last(points: np.ndarray, order: np.ndarray, distance: float) -> np.ndarray:
    """`order` with every near copy (closer than `distance` on the unit sphere to an image
    kept earlier in it) moved to the end, in its own order: a copy teaches nothing its twin did
    not. One Gram matrix finds the close pairs (usually none), then a walk over the order."""
    sq_norms = np.einsum("ij,ij->i", points, points)
    close = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (points @ points.T) < distance**2
    np.fill_diagonal(close, False)
    if not close.any():
        return order
    partners = {
        int(i): set(np.flatnonzero(close[i]).tolist()) for i in np.flatnonzero(close.any(1))
    }
    kept: list[int] = []
    kept_set: set[int] = set()
    copies: list[int] = []
    for index in (int(i) for i in order):
        if partners.get(index, set()) & kept_set:
            copies.append(index)
        else:
            kept.append(index)
            kept_set.add(index)
    return np.array(kept + copies, dtype=np.int64)


def _rank01_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """`_rank01` of `values` inside each group."""
    result = np.zeros(values.size, dtype=np.float64)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        result[members] = _rank01(values[members])
    return result


def _order(
    pool_labels: np.ndarray, covered: np.ndarray, score: np.ndarray, weight: float, k: int
) -> np.ndarray:
    """One pick per cluster by priority, then the best remaining scores (steps 3-4); indices
    into `pool_labels` and `score` (an empty pool gives an empty order)."""
    n = pool_labels.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    clusters = np.unique(pool_labels)
    members_of = [np.flatnonzero(pool_labels == c) for c in clusters]
    best = np.empty(clusters.size, dtype=np.int64)
    for position, members in enumerate(members_of):
        best[position] = members[np.argmax(score[members])]
    sizes = np.array([members.size for members in members_of], dtype=np.float64)
    is_open = (~covered[clusters]).astype(np.float64)
    priority = (1.0 - weight) * (is_open + 0.5 * _rank01(sizes)) + weight * score[best]
    chosen = best[np.argsort(-priority, kind="stable")][:k]
    if chosen.size < k:
        rest = np.setdiff1d(np.arange(n), chosen)
        fill = rest[np.argsort(-score[rest], kind="stable")][: k - chosen.size]
        chosen = np.concatenate([chosen, fill])
    result: np.ndarray = chosen.astype(np.int64)
    return result
