"""A 2-D map of embeddings (t-SNE via openTSNE) and nearest neighbours by cosine similarity.

Why t-SNE through openTSNE (BSD-3-Clause, Poličar et al., "openTSNE: a modular Python library
for t-SNE dimensionality reduction and embedding", JSS 2024) rather than UMAP: umap-learn needs
numba and llvmlite (~150 MB, and a JIT compile of tens of seconds on a worker's first map),
while openTSNE is a 13 MB wheel over numpy/scipy/scikit-learn. Its FFT-accelerated gradients
(Linderman et al., Nature Methods 2019) and approximate neighbours lay out 20,000 points in
well under a minute on one core (bench/embedding_map.py), and with PCA initialisation the
global arrangement is kept as UMAP's is (Kobak & Linderman, Nature Biotech 2021), so clusters
of one kind of object sit together, which is what tagging a whole cluster at once needs.

Arrays in, arrays out; no Django. Inputs are validated once here, the work is in helpers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Below this many points t-SNE's neighbourhood model has nothing to work with; a PCA projection
# (or a fixed arrangement) lays out a handful of images just as well.
_TSNE_MIN_POINTS = 12
_PCA_DIMS = 50  # t-SNE on the top principal components: the usual denoising step, and faster


class LayoutError(ValueError):
    """The embeddings cannot be laid out (wrong shape, non-finite values)."""


def _ignore(fraction: float) -> None:
    return None


def layout_2d(
    embeddings: np.ndarray,  # (N, D) float, one backbone embedding per image
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    on_progress: Callable[[float], None] = _ignore,
) -> np.ndarray:
    """(N, 2) float32 coordinates scaled into [-1, 1], close points for similar embeddings.

    Deterministic for a given `seed` and input. Raises LayoutError for bad input.
    """
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise LayoutError(f"embeddings must be a 2-D array (N, D); got shape {array.shape}.")
    if array.shape[0] and array.shape[1] < 1:
        raise LayoutError("embeddings must have at least one column.")
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise LayoutError("embeddings must be finite numbers (no NaN or infinity).")
    if perplexity <= 0:
        raise LayoutError("perplexity must be positive.")
    points = _layout(_normalise(array.astype(np.float32)), seed, perplexity, on_progress)
    on_progress(1.0)
    return _scale(points)


def nearest(
    embeddings: np.ndarray,  # (N, D)
    query: np.ndarray,  # (D,)
    *,
    k: int,
    exclude: int | None = None,
) -> np.ndarray:
    """Row indices of the `k` embeddings most similar to `query` (cosine), most similar first.

    `exclude` leaves one row out (the query image itself). Ties keep the lower row first.
    """
    array = np.asarray(embeddings, dtype=np.float32)
    vector = np.asarray(query, dtype=np.float32).reshape(-1)
    if array.ndim != 2 or array.shape[1] != vector.shape[0]:
        raise LayoutError(
            f"embeddings (N, D) and query (D,) must agree; got {array.shape} and {vector.shape}."
        )
    if k < 1:
        raise LayoutError("k must be at least 1.")
    similarity = _normalise(array) @ _normalise(vector[None, :])[0]
    if exclude is not None and 0 <= exclude < len(similarity):
        similarity[exclude] = -np.inf
    order = np.argsort(-similarity, kind="stable")
    keep: np.ndarray = order[np.isfinite(similarity[order])]
    return keep[:k]


def _normalise(array: np.ndarray) -> np.ndarray:
    """Unit rows: cosine geometry, the one the backbone's pooled features are compared in."""
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return unit


def _layout(
    array: np.ndarray, seed: int, perplexity: float, on_progress: Callable[[float], None]
) -> np.ndarray:
    count = array.shape[0]
    if count == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if count < _TSNE_MIN_POINTS:
        return _pca(array, 2)
    reduced = _pca(array, min(_PCA_DIMS, array.shape[1], count), seed)
    return _tsne(reduced, seed, perplexity, on_progress)


def _pca(array: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """The top `dims` principal components (zero-padded when the data has fewer).

    Randomized SVD (Halko, Martinsson & Tropp, SIAM Review 2011: a Gaussian sketch, two power
    iterations): for 20,000 x 1,280 features it costs a few matrix products instead of a full
    SVD, and the top components it returns are the exact ones to within noise.
    """
    centred = array - array.mean(axis=0, keepdims=True)
    rank = min(dims + 10, *centred.shape)
    sketch = np.random.default_rng(seed).standard_normal((centred.shape[1], rank))
    basis, _ = np.linalg.qr(centred @ sketch.astype(np.float32))
    for _ in range(2):
        basis, _ = np.linalg.qr(centred.T @ basis)
        basis, _ = np.linalg.qr(centred @ basis)
    _, _, vt = np.linalg.svd(basis.T @ centred, full_matrices=False)
    # Fix each component's sign (largest loading positive) so a layout is reproducible.
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1
    projected = centred @ (vt.T * signs)
    out = np.zeros((array.shape[0], dims), dtype=np.float32)
    take = min(dims, projected.shape[1])
    out[:, :take] = projected[:, :take]
    return out


def _tsne(
    reduced: np.ndarray, seed: int, perplexity: float, on_progress: Callable[[float], None]
) -> np.ndarray:
    from openTSNE import TSNE  # imported here: only the worker that lays out maps pays for it

    count = reduced.shape[0]
    total_iters = 250 + 500  # early exaggeration, then the main phase (openTSNE's defaults)
    done = [0]

    def callback(iteration: int, error: float, embedding: np.ndarray) -> bool:
        done[0] += 50
        on_progress(min(0.99, done[0] / total_iters))
        return False  # never stop early

    tsne = TSNE(
        n_components=2,
        # Perplexity must stay below N/3 or the neighbourhoods cover the whole set.
        perplexity=min(perplexity, max(2.0, (count - 1) / 3.0)),
        metric="euclidean",  # on PCA of unit rows: the cosine geometry
        initialization="pca",
        negative_gradient_method="fft" if count > 5000 else "bh",
        neighbors="annoy" if count > 5000 else "exact",
        n_jobs=1,
        random_state=seed,
        callbacks=callback,
        callbacks_every_iters=50,
        verbose=False,
    )
    return np.asarray(tsne.fit(reduced), dtype=np.float32)


def _scale(points: np.ndarray) -> np.ndarray:
    """Centre and scale into [-1, 1] (the browser's view starts there)."""
    if len(points) == 0:
        return points.astype(np.float32)
    centred = points - (points.max(axis=0) + points.min(axis=0)) / 2
    extent = float(np.abs(centred).max())
    scaled: np.ndarray = (centred / extent if extent > 0 else centred).astype(np.float32)
    return scaled
