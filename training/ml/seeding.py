"""One place that seeds every random number generator the ML core uses."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed `random`, numpy's legacy global RNG and torch; return a fresh numpy Generator.

    Returning a Generator lets callers draw from an explicit RNG instead of the global one, so
    a function's randomness does not depend on what ran before it.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
