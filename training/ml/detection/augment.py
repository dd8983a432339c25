"""Box conversions and the training augmentation for detection, where boxes follow the image.

Boxes outside this module are Custom Vision's normalised ``(left, top, width, height)``; inside
the detector they are pixel ``(x1, y1, x2, y2)`` tensors wrapped in ``tv_tensors.BoundingBoxes``
so every torchvision v2 transform moves, flips, crops and clamps them with the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

# (tag index, left, top, width, height), normalised to the image's width and height.
NormalizedBox = tuple[int, float, float, float, float]

# A box that keeps less than this share of its area after a crop is dropped: the object is
# mostly gone, and teaching the detector to fire on a sliver hurts more than it helps.
MIN_VISIBLE_FRACTION = 0.4
MIN_BOX_SIZE_PX = 2.0


@dataclass(frozen=True)
class AugmentConfig:
    """Chances and ranges of the training augmentation (multi-scale resizing happens later,
    in the detector's own transform)."""

    flip_p: float = 0.5
    photometric_p: float = 0.5
    crop_p: float = 0.5
    crop_scale: tuple[float, float] = (0.5, 1.0)  # kept side length as a fraction, both axes


def to_pixel_boxes(
    boxes: Sequence[NormalizedBox], width_px: int, height_px: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (tag, l, t, w, h) rows -> float32 (N, 4) xyxy pixels and int64 (N,) labels."""
    rows = np.asarray([b[1:] for b in boxes], dtype=np.float64).reshape(-1, 4)
    scale = np.array([width_px, height_px, width_px, height_px], dtype=np.float64)
    xyxy = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:]], axis=1) * scale
    labels = torch.as_tensor([int(b[0]) for b in boxes], dtype=torch.int64)
    return torch.as_tensor(xyxy, dtype=torch.float32), labels


def to_normalized_boxes(
    xyxy_px: torch.Tensor, width_px: int, height_px: int
) -> list[tuple[float, float, float, float]]:
    """float (N, 4) xyxy pixels -> (left, top, width, height) fractions clipped to the image."""
    scale = torch.tensor([width_px, height_px, width_px, height_px], dtype=torch.float64)
    boxes = (xyxy_px.detach().to(torch.float64) / scale).clamp(0.0, 1.0)
    return [(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes.tolist()]


class TrainAugment:
    """(uint8 image (3, H, W), BoundingBoxes xyxy, labels (N,)) -> the same, augmented.

    Photometric distortion, horizontal flip and a random zoom-in crop that keeps the aspect
    ratio; the detector's transform then resizes to a random training scale. Randomness comes
    from ``torch``'s global generator, which the training loop seeds.
    """

    def __init__(self, config: AugmentConfig = AugmentConfig()) -> None:
        self.config = config
        self._photometric = v2.RandomPhotometricDistort(p=1.0)

    def __call__(
        self, image: torch.Tensor, boxes: tv_tensors.BoundingBoxes, labels: torch.Tensor
    ) -> tuple[torch.Tensor, tv_tensors.BoundingBoxes, torch.Tensor]:
        config = self.config
        if _chance(config.photometric_p):
            image = self._photometric(image)
        if _chance(config.flip_p):
            image, boxes = TF.horizontal_flip(image), TF.horizontal_flip(boxes)
        if _chance(config.crop_p):
            image, boxes, labels = _random_crop(image, boxes, labels, config.crop_scale)
        return image, boxes, labels


def _chance(p: float) -> bool:
    return p > 0 and float(torch.rand(())) < p


def _random_crop(
    image: torch.Tensor,
    boxes: tv_tensors.BoundingBoxes,
    labels: torch.Tensor,
    scale: tuple[float, float],
) -> tuple[torch.Tensor, tv_tensors.BoundingBoxes, torch.Tensor]:
    height, width = image.shape[-2:]
    fraction = float(torch.empty(()).uniform_(scale[0], scale[1]))
    crop_w, crop_h = max(1, round(width * fraction)), max(1, round(height * fraction))
    left = int(torch.randint(0, width - crop_w + 1, ()))
    top = int(torch.randint(0, height - crop_h + 1, ()))
    areas_before = _areas(boxes)
    image = TF.crop(image, top, left, crop_h, crop_w)
    # v2's crop shifts the boxes and clamps them to the new canvas.
    cropped = TF.crop(boxes, top, left, crop_h, crop_w)
    sides = cropped[:, 2:] - cropped[:, :2]
    keep = (_areas(cropped) >= MIN_VISIBLE_FRACTION * areas_before) & (
        sides >= MIN_BOX_SIZE_PX
    ).all(dim=1)
    kept = tv_tensors.wrap(cropped[keep], like=cropped)
    return image, kept, labels[keep]


def _areas(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
