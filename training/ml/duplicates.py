"""Near-duplicate images from their backbone embeddings: groups of copies, not look-alikes.

Two images are near-duplicates when the cosine similarity of their pooled backbone embeddings
(the last map's part, `duplicate_view`) is at least `DUPLICATE_SIMILARITY`. The threshold is
calibrated, not guessed (`bench/duplicates_calibration.py`, figures in bench/RESULTS.md). Over
the four quadrants of the ten scikit-image photographs (512 px each), embedded with lite0 (the
same values as the last map's part of lite0-levels): copies resized to 1/2 or 1/3, re-encoded
as JPEG at quality 95 or 75, or as PNG measured >= 0.959 (98-100% found at 0.96); a different
quadrant of the same photograph (a different photo of the same kind of thing: mostly grass,
gravel, brick and moon textures) is flagged 1.7% of the time at 0.96 but 15% at 0.94 and 33% at
0.85; quadrants of other photographs never exceed 0.51. Harsh copies are partly missed at 0.96:
JPEG quality 50 (65% found), quality 30 (28%), half size then quality 75 (42%). The threshold
favours precision: a false "duplicate" sends a user to delete good images.

Search at 20,000 images: an exact all-pairs comparison of 1,280-d vectors is 256 GFLOP, seconds
too many. So candidates come from a fixed 128-d random projection of the unit vectors
(`ranking.compact_embeddings`, re-normalised: it keeps the cosine to about 0.007 near 0.96),
compared block by block with a looser threshold (`CANDIDATE_SLACK` below), and each candidate
pair is then confirmed on the full vectors. A true pair is missed only if the projection moved
its similarity down by more than the slack: far beyond the projection's error for pairs this
close (the error shrinks as similarity approaches 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .embedding_parts import last_map_part
from .ranking import compact_embeddings

# Calibrated (module docstring).
DUPLICATE_SIMILARITY = 0.96
# Copies are judged on the embedding's last map's part (embedding_parts; all of a plain
# backbone's embedding). The `-levels` embeddings' pools of blocks 4-6 before it describe
# texture: on the whole vector, other crops of one grass or gravel photograph were flagged 13%
# of the time at 0.96 against 1.7% on this part, and no threshold kept both that and the copies
# found (bench/duplicates_calibration.py --whole).
# Candidates from the 128-d projection: its error at a similarity of 0.96 measured 0.007 (std),
# -0.028 at worst in 200 pairs; 0.06 is a wide margin.
CANDIDATE_SLACK = 0.06
_BLOCK_ROWS = 2048
_EPS = 1e-12


@dataclass(frozen=True)
class DuplicateGroup:
    """Row indexes (ascending) of images that are copies of each other, and the closest pair's
    similarity."""

    members: tuple[int, ...]
    similarity: float


def near_duplicate_pairs(
    embeddings: np.ndarray, *, threshold: float = DUPLICATE_SIMILARITY
) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) int64 row pairs (i < j) whose cosine similarity is >= `threshold`, and their
    (P,) float32 similarities.

    embeddings: (N, D) float, any scale, finite. threshold in (0, 1].
    """
    return _pairs(embeddings, threshold)


def near_duplicate_groups(
    embeddings: np.ndarray, *, threshold: float = DUPLICATE_SIMILARITY
) -> list[DuplicateGroup]:
    """Connected groups of near-duplicate rows (at least two each), largest first.

    A group is the transitive closure of the pairs: A~B and B~C put A, B and C together, as a
    user fixing copies wants to see them together.
    """
    pairs, sims = _pairs(embeddings, threshold)
    return group_pairs(pairs, sims)


def group_pairs(pairs: np.ndarray, similarities: np.ndarray) -> list[DuplicateGroup]:
    """The connected groups of `near_duplicate_pairs`' answer, largest first."""
    n = int(pairs.max()) + 1 if pairs.size else 0
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    best: dict[int, float] = {}
    members: dict[int, list[int]] = {}
    for (a, _b), sim in zip(pairs.tolist(), similarities.tolist(), strict=True):
        r = root(a)
        best[r] = max(best.get(r, -1.0), float(sim))
    for i in sorted({int(x) for x in pairs.reshape(-1).tolist()}):
        members.setdefault(root(i), []).append(i)
    groups = [DuplicateGroup(tuple(m), best[r]) for r, m in members.items()]
    return sorted(groups, key=lambda g: (-len(g.members), g.members[0]))


def duplicate_view(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) embeddings -> the (N, <= 1280) float32 part copies are judged on."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D); got shape {x.shape}.")
    return last_map_part(x)


def _validate(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    x = duplicate_view(embeddings)
    if not np.isfinite(x).all():
        raise ValueError("embeddings must be finite numbers.")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}.")
    return x


def _pairs(embeddings: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    x = _validate(embeddings, threshold)
    n = x.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)
    compact = compact_embeddings(unit)
    # A random projection keeps angles, not lengths (norms vary ~10% at 128-d): re-normalise so
    # the dot product estimates the cosine.
    compact /= np.maximum(np.linalg.norm(compact, axis=1, keepdims=True), _EPS)
    loose = threshold - CANDIDATE_SLACK
    found: list[np.ndarray] = []
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(n, start + _BLOCK_ROWS)
        # Only columns from `start` on: each unordered pair is looked at once.
        sims = compact[start:stop] @ compact[start:].T
        rows, cols = np.nonzero(sims >= loose)
        cols = cols + start
        rows = rows + start
        keep = cols > rows
        if keep.any():
            found.append(np.stack([rows[keep], cols[keep]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    candidates = np.concatenate(found).astype(np.int64)
    exact = np.einsum("ij,ij->i", unit[candidates[:, 0]], unit[candidates[:, 1]])
    close = exact >= threshold
    return candidates[close], exact[close].astype(np.float32)


def split_pairs(
    pairs: np.ndarray, side_of: Sequence[int] | np.ndarray, *, unknown: int = -2
) -> np.ndarray:
    """Mask (P,) of pairs whose two rows sit on different sides (e.g. folds); rows whose side is
    `unknown` never count."""
    side = np.asarray(side_of)
    a, b = side[pairs[:, 0]], side[pairs[:, 1]]
    result: np.ndarray = (a != b) & (a != unknown) & (b != unknown)
    return result
