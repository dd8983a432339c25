"""The stratified train / held-out split that early stopping and the held-out scores use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data import ImageRef
from ..quick import fold_count, stratified_folds


def _split(targets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    k = fold_count(targets, 5)
    folds = stratified_folds(targets, k, seed)
    return np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)


@dataclass(frozen=True)
class Data:
    """The stratified train / held-out split of the refs and their targets."""

    train_index: np.ndarray
    holdout_index: np.ndarray
    train_refs: list[ImageRef]
    holdout_refs: list[ImageRef]
    y_train: torch.Tensor
    y_holdout: torch.Tensor

    @classmethod
    def split(cls, refs: Sequence[ImageRef], targets: np.ndarray, seed: int) -> Data:
        train_index, holdout_index = _split(targets, seed)
        return cls(
            train_index=train_index,
            holdout_index=holdout_index,
            train_refs=[refs[i] for i in train_index],
            holdout_refs=[refs[i] for i in holdout_index],
            y_train=torch.as_tensor(targets[train_index], dtype=torch.float32),
            y_holdout=torch.as_tensor(targets[holdout_index], dtype=torch.float32),
        )
