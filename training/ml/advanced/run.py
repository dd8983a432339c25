"""One fine-tuning run's state, shared by the epoch loop and both recipes' data paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..device import Precision
from .model import Classifier
from .recipe import FineTuneRecipe
from .split import Data
from .timing import Clock

ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class Cached:
    """The cached recipe's frozen-prefix outputs (filled once by prefix_cache.cache_prefix)."""

    train: torch.Tensor  # (N, C, h, w) float16: the frozen prefix's output per training image
    holdout: torch.Tensor  # (M, C, H, W) float32: the same at the serving size, held-out images
    size: int  # the side the training images were decoded at


@dataclass
class Run:
    model: Classifier
    data: Data
    backbone: str
    multilabel: bool
    clock: Clock
    optimizer: torch.optim.Optimizer
    batch_size: int
    max_epochs: int
    on_progress: ProgressFn
    should_stop: Callable[[], bool]
    precision: Precision
    recipe: FineTuneRecipe = field(default_factory=FineTuneRecipe)
    spent: dict[str, float] = field(default_factory=dict)  # seconds per phase, for the bench
    cached: Cached | None = None
    planned_epochs: int = 0  # epochs the budget buys at the measured pace (the cap at first)

    def __post_init__(self) -> None:
        self.planned_epochs = self.planned_epochs or self.max_epochs

    @property
    def device(self) -> torch.device:
        return self.precision.device
