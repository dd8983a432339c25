"""Held-out split for detection and running a detector over PIL images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ..detection_metrics import Detection
from .augment import NormalizedBox, to_normalized_boxes
from .model import Detector, DetectorConfig


def holdout_split(
    boxes: Sequence[Sequence[NormalizedBox]],
    *,
    num_tags: int,
    fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), stratified by tag.

    Each image joins the stratum of its rarest tag (images without boxes, the negatives, form
    their own), and each stratum gives ``round(fraction * size)`` images to the held-out side,
    so a rare tag is not left out of the evaluation by chance.
    """
    counts = np.zeros(num_tags + 1, dtype=np.int64)
    for image_boxes in boxes:
        for tag in {int(b[0]) for b in image_boxes}:
            counts[tag] += 1
    strata = np.asarray(
        [
            min((int(b[0]) for b in image_boxes), key=lambda t: (counts[t], t))
            if image_boxes
            else num_tags
            for image_boxes in boxes
        ],
        dtype=np.int64,
    )
    holdout: list[int] = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        take = round(fraction * len(members))
        holdout.extend(rng.permutation(members)[:take].tolist())
    held = np.zeros(len(boxes), dtype=bool)
    held[holdout] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def inference_size(width_px: int, height_px: int, config: DetectorConfig) -> tuple[int, int]:
    """The (width, height) the detector resizes an image to at inference."""
    scale = min(
        config.image_size_px / min(width_px, height_px),
        config.max_size_px / max(width_px, height_px),
    )
    return max(1, int(width_px * scale)), max(1, int(height_px * scale))


def prepare_image(image: Image.Image, config: DetectorConfig) -> torch.Tensor:
    """PIL image -> float (3, h, w) in [0, 1] at the detector's inference size.

    Resizing here with Pillow (rather than letting the model resize a full-size tensor) keeps a
    12-megapixel photograph from becoming a 150 MB float tensor first.
    """
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    size = inference_size(*rgb.size, config)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    tensor: torch.Tensor = TF.to_dtype(TF.pil_to_tensor(rgb), torch.float32, scale=True)
    return tensor


def detect(
    model: Detector, images: Sequence[Image.Image], config: DetectorConfig, batch_size: int = 4
) -> list[list[Detection]]:
    """Per image, (tag, probability, left, top, width, height) normalised, highest first.

    The model's own non-maximum suppression (per tag, IoU ``config.nms_iou``) has already run.
    """
    model.eval()
    device = next(model.parameters()).device
    results: list[list[Detection]] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            tensors = [
                prepare_image(image, config).to(device)
                for image in images[start : start + batch_size]
            ]
            for tensor, output in zip(tensors, model(tensors), strict=True):
                height, width = tensor.shape[-2:]
                output = {key: value.cpu() for key, value in output.items()}
                results.append(_as_detections(output, width, height))
    return results


def _as_detections(output: dict[str, torch.Tensor], width: int, height: int) -> list[Detection]:
    order = torch.argsort(output["scores"], descending=True, stable=True)
    boxes = to_normalized_boxes(output["boxes"][order], width, height)
    detections: list[Detection] = []
    for tag, score, (left, top, box_w, box_h) in zip(
        output["labels"][order].tolist(), output["scores"][order].tolist(), boxes, strict=True
    ):
        if box_w > 0 and box_h > 0:
            detections.append((int(tag), float(score), left, top, box_w, box_h))
    return detections
