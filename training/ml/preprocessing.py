"""Decode images and turn them into the tensors a backbone expects.

Bump PREPROCESSING_VERSION whenever the pixels that reach the backbone change: the feature cache
is keyed on it, so old embeddings are never mixed with new ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2

from .backbones import BackboneSpec
from .decode import load_rgb, resize_center_crop

PREPROCESSING_VERSION: int = 1

__all__ = [
    "PREPROCESSING_VERSION",
    "eval_transform",
    "load_rgb",
    "normalize_batch",
    "resize_center_crop",
    "train_transform",
]

Transform = Callable[[Image.Image], torch.Tensor]


def normalize_batch(pixels: torch.Tensor, spec: BackboneSpec) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float32 (N,3,H,W) normalised with the backbone's mean and std."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    batch = pixels.permute(0, 3, 1, 2).to(torch.float32)
    return ((batch - mean) / std).contiguous()


def eval_transform(spec: BackboneSpec) -> Transform:
    """PIL image -> normalised float tensor (3, S, S): shorter side to S, centre crop."""

    def transform(image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(resize_center_crop(image, spec.input_size).copy())
        return normalize_batch(pixels[None], spec)[0]

    return transform


def train_transform(spec: BackboneSpec) -> Transform:
    """PIL image -> augmented normalised tensor (3, S, S) for fine-tuning.

    RandomResizedCrop + flip + TrivialAugmentWide, torchvision's classification recipe.
    """
    pipeline = v2.Compose(
        [
            v2.RandomResizedCrop(spec.input_size, scale=(0.25, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.TrivialAugmentWide(),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
        ]
    )

    def transform(image: Image.Image) -> torch.Tensor:
        result: torch.Tensor = pipeline(image)
        return result

    return transform
