"""The two parts of a backbone embedding (training.ml.backbones), by position.

An embedding always ends with the pool of the backbone's last convolutional map, its last
LAST_MAP_VALUES values (all of a plain backbone's embedding). A `-levels` backbone puts the pools
of blocks 4-6 before it. Numpy only: it imports nothing of the model.

- Near-duplicates are judged on the last map's part alone (training.ml.duplicates).
- Quick training's head weighs the blocks' part LEVELS_WEIGHT times the last map's part: each
  standardised column of it is scaled by that much before the L2-penalised fit, i.e. a penalty
  LEVELS_WEIGHT^2 times weaker. Measured with quick training's own inner CV (bench/RESULTS.md,
  "the blocks' part weighed"): at 3, +1.2 points on photographs, +6.7 on glyphs on photographs,
  +4.0 on faint textures, +10.8 on 8x8 digits and +1.0 on shapes against 1 (lite0-levels); 6-10
  gave no more on the glyphs and less on photographs.
"""

from __future__ import annotations

import numpy as np

LAST_MAP_VALUES = 1280
LEVELS_WEIGHT = 3.0


def last_map_part(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, min(D, LAST_MAP_VALUES)): the last map's pool (a view, not a copy)."""
    return embeddings[:, -LAST_MAP_VALUES:]


def head_column_scale(dim: int) -> np.ndarray:
    """(dim,) float64: LEVELS_WEIGHT for the blocks' part of a `dim`-value embedding, 1 for the
    last map's part (all ones for an embedding of LAST_MAP_VALUES values or fewer)."""
    scale = np.ones(dim)
    scale[: max(0, dim - LAST_MAP_VALUES)] = LEVELS_WEIGHT
    return scale
