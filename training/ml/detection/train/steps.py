"""Where a training step's losses come from: cached views, or images decoded every step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ...data import ImageRef
from ...device import to_device
from ..augment import NormalizedBox, TrainAugment
from ..cached import CachedView, cached_losses
from ..model import Detector
from .images import decoded


class Step(Protocol):
    def losses(self, chunk: np.ndarray) -> dict[str, torch.Tensor]: ...


class ImageStep:
    """End-to-end: decode, augment, and run the whole detector."""

    def __init__(
        self,
        model: Detector,
        refs: Sequence[ImageRef],
        boxes: Sequence[Sequence[NormalizedBox]],
        augment: TrainAugment,
    ) -> None:
        self.model, self.refs, self.boxes, self.augment = model, refs, boxes, augment

    def losses(self, chunk: np.ndarray) -> dict[str, torch.Tensor]:
        images: list[torch.Tensor] = []
        targets: list[dict[str, torch.Tensor]] = []
        for index in chunk.tolist():
            image, moved, labels = self.augment(*decoded(self.refs[index], self.boxes[index]))
            images.append(TF.to_dtype(image, torch.float32, scale=True))
            targets.append({"boxes": moved.as_subclass(torch.Tensor), "labels": labels})
        device = next(self.model.parameters()).device
        images = [to_device(image, device) for image in images]
        targets = [{key: value.to(device) for key, value in t.items()} for t in targets]
        losses: dict[str, torch.Tensor] = self.model(images, targets)
        return losses


class CachedStep:
    """A random cached view of each image through the FPN and head (and, from ``from_block``
    on, the backbone's trainable blocks)."""

    def __init__(
        self,
        model: Detector,
        views: dict[int, list[CachedView]],
        rng: np.random.Generator,
        *,
        from_block: int | None,
    ) -> None:
        self.model, self.views, self.rng, self.from_block = model, views, rng, from_block

    def losses(self, chunk: np.ndarray) -> dict[str, torch.Tensor]:
        picked = []
        for index in chunk.tolist():
            options = self.views[index]
            picked.append(options[int(self.rng.integers(len(options)))])
        return cached_losses(self.model, picked, from_block=self.from_block)
