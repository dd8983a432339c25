"""Decoding a training image (with its boxes in pixels) or a held-out one (at inference size)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from ...data import ImageRef, read_bytes
from ...preprocessing import load_rgb
from ..augment import NormalizedBox, to_pixel_boxes
from ..evaluate import inference_size
from ..model import DetectorConfig


def decoded(
    ref: ImageRef, boxes: Sequence[NormalizedBox]
) -> tuple[torch.Tensor, tv_tensors.BoundingBoxes, torch.Tensor]:
    """uint8 (3, H, W) image, its boxes in pixels and their labels."""
    pil = _open_rgb(ref)
    width, height = pil.size
    xyxy, labels = to_pixel_boxes(boxes, width, height)
    return (
        TF.pil_to_tensor(pil),
        tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(height, width)),
        labels,
    )


def inference_image(ref: ImageRef, config: DetectorConfig) -> Image.Image:
    image = _open_rgb(ref)
    size = inference_size(*image.size, config)
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def _open_rgb(ref: ImageRef) -> Image.Image:
    data = read_bytes(ref)
    return load_rgb(data, key=ref.key)
