"""Which images a person should look at next: "Most gain" ordering and active-learning picks.

Both functions take embeddings (the pooled backbone features stored with every image) and
per-image uncertainty scores (training.ml.uncertainty) and return row indices. Embeddings are
compared by the Euclidean distance of their L2-normalised vectors (a monotone function of cosine
similarity), so the scale of a backbone's features does not matter.

diverse_top(embeddings, uncertainty, k=...) -- the Predictions tab's "Most gain" order
    1. Keep the `candidates` most uncertain images (default 10 * k); the rest cannot make page one.
    2. Pick the most uncertain candidate. Then, k - 1 times, pick the candidate with the best
       ``uncertainty * min(1, d / d_ref) ** diversity``, where d is its distance to the nearest
       image already picked (greedy k-center) and d_ref the median distance of the candidates to
       the first pick: an image as far from the picks as a typical candidate keeps its whole
       uncertainty, a near copy of a picked image keeps almost none.
    3. A candidate closer than ``min_distance_ratio * d_ref`` to a pick (a near duplicate) is only
       taken once every other candidate is used up, whatever its uncertainty.
    Knobs: `candidates` (how far down the uncertainty order page one may reach), `diversity`
    (0 = pure uncertainty order apart from the duplicate rule, larger = spread wider),
    `min_distance_ratio` (what counts as a near duplicate). Cost: k passes over candidates x D
    floats. Store `compact_embeddings(...)` (128 dims, a fixed random projection that keeps
    distances within ~10%, Johnson-Lindenstrauss) next to each prediction and pass those: ten
    times less to read per request than raw 1,280-d features, for the same order.

select_for_labeling(pool, labeled=..., pool_probs=..., budget=...) -- what to label next
    Cold start follows TypiClust (Hacohen et al., 2022): with few labels, a frozen-feature model's
    uncertainty is unreliable, and picking by it does worse than random; picking typical images
    of not-yet-covered regions does better.
    1. Cluster pool + labeled embeddings with k-means (k-means++ seeding, numpy) into
       ``|labeled| + budget`` clusters (at most `max_clusters`).
    2. Typicality of an image = 1 / mean distance to its `typicality_neighbours` nearest
       neighbours in its cluster (a density estimate).
    3. Blend weight ``w = min(1, |labeled| / (labels_per_tag * T))`` with T the number of tags
       in `pool_probs` (w = 0 without probabilities): the first rounds are pure TypiClust and
       uncertainty has taken over once every tag has `labels_per_tag` labels on average.
    4. Clusters are visited by priority ``(1 - w) * (open + size rank / 2) + w * unsure rank``
       (open = holds no labeled image, so at w = 0 every open cluster comes before a covered
       one, largest first; unsure rank = the global uncertainty rank of its least sure image),
       and each gives one image: the best ``(1 - w) * typicality rank in the cluster + w *
       global uncertainty rank`` (ranks scaled to [0, 1]). At w = 1 this is "the least sure
       images, at most one per cluster". If the clusters run out, the best remaining blends
       fill the budget.
    5. Scale: past `max_points` pool images, the rule runs on a sample of that many (the least
       sure share ``w / 2`` of it, the rest drawn at random); past `max_points` labeled images,
       on a random sample of those. 100,000 stored predictions cost the same as 4,000.
    bench/active_learning.py measures this against random selection (bench/RESULTS.md).
"""

from __future__ import annotations

import numpy as np

from .uncertainty import classification_uncertainty

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


def diverse_top(
    embeddings: np.ndarray,
    uncertainty: np.ndarray,
    *,
    k: int,
    candidates: int | None = None,
    diversity: float = 1.0,
    min_distance_ratio: float = 0.25,
) -> np.ndarray:
    """Indices (min(k, N),) of the images to show first, in order (rule: module docstring)."""
    x = _check_embeddings("embeddings", embeddings)
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.shape != (x.shape[0],):
        raise ValueError(f"uncertainty must be ({x.shape[0]},); got shape {u.shape}.")
    if k < 0:
        raise ValueError(f"k must be at least 0; got {k}.")
    if diversity < 0 or min_distance_ratio < 0:
        raise ValueError("diversity and min_distance_ratio must not be negative.")
    pool = 10 * k if candidates is None else candidates
    if pool < k:
        raise ValueError(f"candidates ({pool}) must be at least k ({k}).")
    n = x.shape[0]
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    # Stable sort: equal uncertainty keeps the caller's order (e.g. newest first).
    order = np.argsort(-u, kind="stable")[: min(pool, n)]
    picked = _greedy_diverse(_unit_rows(x[order]), u[order], k, diversity, min_distance_ratio)
    result: np.ndarray = order[picked]
    return result


def _greedy_diverse(
    points: np.ndarray, u: np.ndarray, k: int, diversity: float, min_distance_ratio: float
) -> np.ndarray:
    """Greedy uncertainty-weighted k-center over candidates sorted by falling uncertainty."""
    c = points.shape[0]
    sq_norms = np.einsum("ij,ij->i", points, points)
    picked = np.empty(k, dtype=np.int64)
    picked[0] = 0
    nearest = np.sqrt(_sq_dist_to(points, points[0], sq_norms))
    d_ref = float(np.median(nearest[1:])) if c > 1 else 0.0
    taken = np.zeros(c, dtype=bool)
    taken[0] = True
    base = np.maximum(u, 0.0) + _EPS  # keeps zero-uncertainty images ordered by distance
    for step in range(1, k):
        if d_ref > _EPS:
            novelty = np.minimum(nearest / d_ref, 1.0) ** diversity
            duplicate = nearest < min_distance_ratio * d_ref
        else:  # every candidate is the same image: fall back to uncertainty order
            novelty = np.ones(c)
            duplicate = np.zeros(c, dtype=bool)
        # Near duplicates sit below every other candidate (score shifted by -2), then the rest.
        score = base * novelty - 2.0 * duplicate
        score[taken] = -np.inf
        best = int(np.argmax(score))
        picked[step] = best
        taken[best] = True
        nearest = np.minimum(nearest, np.sqrt(_sq_dist_to(points, points[best], sq_norms)))
    return picked


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


def select_for_labeling(
    pool_embeddings: np.ndarray,
    *,
    labeled_embeddings: np.ndarray | None = None,
    pool_probs: np.ndarray | None = None,
    multilabel: bool = False,
    budget: int,
    seed: int = 0,
    threshold: float = 0.5,
    labels_per_tag: float = 10.0,
    typicality_neighbours: int = 20,
    max_clusters: int = 500,
    max_points: int = 4000,
) -> np.ndarray:
    """Indices (min(budget, N),) into the pool: what to label next (rule: module docstring)."""
    pool = _check_embeddings("pool_embeddings", pool_embeddings)
    n, d = pool.shape
    labeled = (
        np.zeros((0, d), dtype=np.float32)
        if labeled_embeddings is None
        else _check_embeddings("labeled_embeddings", labeled_embeddings)
    )
    if labeled.shape[1] != d:
        raise ValueError(f"labeled_embeddings must be (M, {d}); got shape {labeled.shape}.")
    if budget < 0:
        raise ValueError(f"budget must be at least 0; got {budget}.")
    budget = min(budget, n)
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    uncertainty = np.zeros(n)
    weight = 0.0
    if pool_probs is not None:
        probs = np.asarray(pool_probs)
        if probs.ndim != 2 or probs.shape[0] != n:
            raise ValueError(f"pool_probs must be ({n}, T); got shape {probs.shape}.")
        uncertainty = classification_uncertainty(probs, multilabel=multilabel, threshold=threshold)
        tags = max(1, probs.shape[1])
        weight = min(1.0, labeled.shape[0] / (labels_per_tag * tags))
    rng = np.random.default_rng(seed)
    subset = _sample_pool(uncertainty, weight, max(max_points, budget), rng)
    if labeled.shape[0] > max_points:
        labeled = labeled[rng.choice(labeled.shape[0], size=max_points, replace=False)]
    m = subset.size
    points = compact_embeddings(np.concatenate([pool[subset], labeled]))
    clusters = min(labeled.shape[0] + budget, max_clusters, points.shape[0])
    labels, _ = kmeans(points, clusters, seed=seed)
    typical = typicality(points, labels, neighbours=typicality_neighbours)[:m]
    covered = set(labels[m:].tolist())
    picks = _pick(labels[:m], covered, typical, uncertainty[subset], weight, budget)
    result: np.ndarray = subset[picks]
    return result


def _sample_pool(
    uncertainty: np.ndarray, weight: float, max_points: int, rng: np.random.Generator
) -> np.ndarray:
    """All pool rows, or `max_points` of them: the least sure share `weight / 2`, the rest random.

    k-means and typicality cost grows with N x clusters; a random sample keeps the density
    structure they measure, and the uncertain share keeps the images uncertainty would pick.
    """
    n = uncertainty.size
    if n <= max_points:
        return np.arange(n)
    unsure = np.argsort(-uncertainty, kind="stable")[: round(weight * max_points / 2)]
    rest = np.setdiff1d(np.arange(n), unsure)
    drawn = rng.choice(rest, size=max_points - unsure.size, replace=False)
    result: np.ndarray = np.sort(np.concatenate([unsure, drawn]))
    return result


def _pick(
    pool_labels: np.ndarray,
    covered: set[int],
    typical: np.ndarray,
    uncertainty: np.ndarray,
    weight: float,
    budget: int,
) -> np.ndarray:
    n = pool_labels.shape[0]
    unsure = _rank01(uncertainty)
    score = weight * unsure
    clusters = np.unique(pool_labels)
    members_of = {int(c): np.flatnonzero(pool_labels == c) for c in clusters}
    for members in members_of.values():
        score[members] += (1.0 - weight) * _rank01(typical[members])
    sizes = np.array([members_of[int(c)].size for c in clusters], dtype=np.float64)
    is_open = np.array([int(c) not in covered for c in clusters], dtype=np.float64)
    most_unsure = np.array([unsure[members_of[int(c)]].max() for c in clusters])
    # TypiClust order (open clusters, largest first) fading into "the cluster holding the
    # least sure image first" as the labels grow.
    priority = (1.0 - weight) * (is_open + 0.5 * _rank01(sizes)) + weight * most_unsure
    chosen: list[int] = []
    for position in np.argsort(-priority, kind="stable")[:budget]:
        members = members_of[int(clusters[position])]
        chosen.append(int(members[np.argmax(score[members])]))
    if len(chosen) < budget:
        rest = np.setdiff1d(np.arange(n), chosen)
        fill = rest[np.argsort(-score[rest], kind="stable")][: budget - len(chosen)]
        chosen.extend(int(i) for i in fill)
    return np.array(chosen, dtype=np.int64)
