"""The best checkpoint so far, kept in memory as a CPU copy of the model's state."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class Best:
    """The checkpoint to beat: lowest held-out loss so far (epoch 0 = the linear-probe start)."""

    loss: float
    scores: np.ndarray
    state: dict[str, torch.Tensor]
    epoch: int = 0
    history: list[float] = field(default_factory=list)

    def offer(self, epoch: int, loss: float, scores: np.ndarray, model: nn.Module) -> None:
        self.history.append(loss)
        if loss < self.loss:
            self.loss, self.scores, self.epoch = loss, scores, epoch
            self.state = state_copy(model)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    # Contiguous: a channels-last run's weights are saved in the layout every loader expects.
    return {
        name: t.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for name, t in model.state_dict().items()
    }
