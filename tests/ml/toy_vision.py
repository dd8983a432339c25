"""A tiny CNN with a linear head on its pooled last conv map (the shape of our classifiers), and
32 px toy sets whose class lives either in an object at a fixed spot or in the background."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from training.ml.saliency import SaliencyModel
from training.ml.seeding import seed_everything

SIZE = 32
# The object: an 8x8 square at rows 4..11, columns 20..27 (top right), i.e. cells (1..2, 5..6)
# of the 8x8 conv grid (stride 4).
OBJECT = (4, 12, 20, 28)
OBJECT_BOX = (20 / SIZE, 4 / SIZE, 8 / SIZE, 8 / SIZE)  # left, top, width, height
COLOURS = ((230, 30, 30), (30, 30, 230))


class ToyNet(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3)))  # type: ignore[no-any-return]


def make_set(kind: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) images and (N,) labels in {0, 1}.

    "object": the class is the square's colour; the background is grey noise for both.
    "background": the class is the background's tint; a white square sits at the same spot.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = rng.integers(70, 190, size=(count, SIZE, SIZE, 3)).astype(np.int16)
    top, bottom, left, right = OBJECT
    for i, label in enumerate(labels):
        if kind == "object":
            images[i, top:bottom, left:right] = COLOURS[label]
        else:
            tint = np.array([50, 0, -50] if label == 0 else [-50, 0, 50])
            images[i] += tint
            images[i, top:bottom, left:right] = (255, 255, 255)
    return images.clip(0, 255).astype(np.uint8), labels


def train_toy(kind: str, *, seed: int = 0, steps: int = 100) -> SaliencyModel:
    """A ToyNet trained on `make_set(kind)`, wrapped as our classifiers are (multiclass: a
    background row last in the head)."""
    seed_everything(seed)
    images, labels = make_set(kind, 64, seed)
    net = ToyNet(classes=3)  # two tags + the never-reported background row
    model = _wrap(net)
    inputs = model.normalise(images)
    targets = torch.from_numpy(labels)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(net(inputs), targets)
        loss.backward()
        optimiser.step()
    net.eval().requires_grad_(False)
    return _wrap(net)


def _wrap(net: ToyNet) -> SaliencyModel:
    return SaliencyModel(
        conv_features=net.forward_features,
        head_weight=net.head.weight.detach(),
        head_bias=net.head.bias.detach(),
        multilabel=False,
        input_size=SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )


def accuracy(model: SaliencyModel, images: np.ndarray, labels: Sequence[int]) -> float:
    return float((model.probabilities(images).argmax(axis=1) == np.asarray(labels)).mean())
