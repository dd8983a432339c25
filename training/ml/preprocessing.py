"""Decode images and turn them into the tensors a backbone expects.

Bump PREPROCESSING_VERSION whenever the pixels that reach the backbone change: the feature cache
is keyed on it, so old embeddings are never mixed with new ones.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

from .backbones import BackboneSpec
from .errors import DatasetCorrupt

PREPROCESSING_VERSION: int = 1

Transform = Callable[[Image.Image], torch.Tensor]

# Everything Pillow raises for a file it cannot decode (truncated, not an image, pixel bomb...).
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


def load_rgb(
    source: bytes | BinaryIO, *, key: str = "", draft_size: int | None = None
) -> Image.Image:
    """Decode `source` into an EXIF-upright RGB image.

    `draft_size` lets JPEG decode at a reduced scale (DCT scaling) while both sides stay at
    least that many pixels: decoding a 12 MP photo to feed a 224 px network is mostly waste.
    Raises DatasetCorrupt(item_key=key) when the bytes are not a readable image.
    """
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with Image.open(stream) as image:
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB") if upright.mode != "RGB" else upright.copy()
    except _DECODE_ERRORS as err:
        name = key or "the image"
        raise DatasetCorrupt(
            f"Image {name} could not be read as a picture ({type(err).__name__}: {err}).",
            item_key=key,
            problem="it is not a picture that can be decoded (a damaged file or an unsupported "
            "format)",
        ) from err


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Scale the shorter side to `size` (upscaling small images) and cut the centre square.

    Returns uint8 (size, size, 3). Resizing only the crop box (`box=`) skips the pixels the crop
    would throw away.
    """
    width, height = image.size
    side = min(width, height)
    left = (width - side) / 2
    top = (height - side) / 2
    box = (left, top, left + side, top + side)
    resized = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.uint8)


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
