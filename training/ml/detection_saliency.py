"""Where a detector looked: a gradient map (LayerCAM) of one predicted box on the backbone.

Method (LayerCAM, Jiang et al., IEEE TIP 2021 — Grad-CAM with per-cell instead of per-map
channel weights — aimed at one box as in the box-score targets of object-detection CAM tools):
run the detector's own preprocessing, backbone and pyramid, with the backbone stages that feed
the pyramid (strides 8, 16 and 32: C3, C4 and the last conv block C5) as the differentiated
maps; run the head over every location, and take as the target the box's score at the
location that produced it — among the locations of the box's tag whose decoded box overlaps
the explained box by IoU >= MATCH_IOU, the highest score (FCOS: sqrt(sigmoid(class) *
sigmoid(centerness)), RetinaNet: sigmoid(class)), which is the one non-maximum suppression
kept. The post-processing (top-k, thresholds, NMS) only selects: it is skipped, not
differentiated. Per stage, ReLU(sum_k ReLU(dscore/dA_kij) A_kij) is the stage's map; each is
spread over the pixels its cells cover (divided by the cell's area), and the three are summed,
cut to the image (the batch is padded to a multiple of 32) and normalised to a peak of 1.

Why three stages, not only the last block as for classifiers: FCOS sends a box to the pyramid
level of its size, and a small box's score comes from the stride-8 level, which reads C3
directly and C5 only through the top-down path. Why per-cell weights: Grad-CAM's weights
average each channel's gradient over the whole map, and a box's gradient is local, so the
average is dominated by the rest of the image; on the toy detector of tests/ml/test_saliency.py
plain Grad-CAM was measured negative everywhere on all three stages (an all-zero map), while
LayerCAM peaks inside the box. Summing per-pixel shares keeps each stage's weight what the
gradient gives it.

Limits: cells are 8 to 32 px of the detector's input (320 px on the shorter side by default):
the map says which region, not which pixels; it is a first-order estimate (positive gradient
times activation); a map explains one box's score, not whether the box is right.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import box_iou

from .detection.evaluate import detect, prepare_image
from .detection.model import Detector, DetectorArtifact, DetectorConfig
from .detection_metrics import Detection

MATCH_IOU = 0.5
NormalizedBox = tuple[float, float, float, float]  # left, top, width, height (fractions)


@dataclass(frozen=True)
class BoxSaliency:
    """Grad-CAM of one detection.

    heat: (H, W) float32 in [0, 1] over the whole image as the detector saw it (its inference
    size); all zeros when nothing pushed the score up. tag_index, score: the explained box's
    tag and probability; box: its (left, top, width, height), fractions of the image.
    """

    heat: np.ndarray
    tag_index: int
    score: float
    box: NormalizedBox


def box_grad_cam(
    model: Detector,
    image: Image.Image,
    config: DetectorConfig,
    *,
    tag_index: int | None = None,
    box: NormalizedBox | None = None,
) -> BoxSaliency | None:
    """Grad-CAM of one box the detector predicts for `image` (see the module docstring).

    With `box` and `tag_index` given, that box is explained; otherwise the detector's most
    confident detection (of `tag_index` if given). None when it predicts no box at all.
    """
    model.eval()
    if box is None:
        (found,) = detect(model, [image], config, batch_size=1)
        if tag_index is not None:
            found = [d for d in found if d[0] == tag_index]
        if not found:
            return None
        tag_index, _, *coords = found[0]
        box = (coords[0], coords[1], coords[2], coords[3])
    elif tag_index is None:
        raise ValueError("Explaining a given box needs its tag_index.")
    if not (box[2] > 0 and box[3] > 0):
        raise ValueError(f"The box must have a positive size, got {box}.")
    device = next(model.parameters()).device
    images, _ = model.transform([prepare_image(image, config).to(device)])
    height, width = images.image_sizes[0]
    with torch.enable_grad():
        # A graph through the backbone (its weights may be frozen): the input carries it, so
        # a shallow stage's gradient includes the paths through the deeper ones.
        pixels = images.tensors.detach().requires_grad_(True)
        stages = list(model.backbone.body(pixels))
        scores, boxes = _location_scores(model, images, stages)
        if not 0 <= tag_index < scores.shape[1]:
            raise ValueError(f"tag_index must be in 0..{scores.shape[1] - 1}, got {tag_index}.")
        left, top, box_w, box_h = box
        wanted = torch.tensor(
            [[left * width, top * height, (left + box_w) * width, (top + box_h) * height]],
            dtype=boxes.dtype,
            device=boxes.device,
        )
        overlap = box_iou(boxes.detach(), wanted)[:, 0]
        tag_scores = scores[:, tag_index]
        matched = overlap >= MATCH_IOU
        # The surviving location is the best-scoring match; with no match (a box the user
        # names that the detector never drew) the best-overlapping location stands in.
        if bool(matched.any()):
            chosen = int(torch.where(matched, tag_scores.detach(), -1.0).argmax())
        else:
            chosen = int(overlap.argmax())
        target = tag_scores[chosen]
        gradients = torch.autograd.grad(target, stages)
    padded = torch.zeros((1, 1, *images.tensors.shape[-2:]), device=device)
    for stage, gradient in zip(stages, gradients, strict=True):
        # LayerCAM: each cell weighs its channels by their own positive gradient there.
        cam = torch.relu((torch.relu(gradient) * stage.detach()).sum(dim=1, keepdim=True))
        # Per pixel: a cell's share spread over the pixels it covers (stride squared).
        cell_area = (images.tensors.shape[-1] / stage.shape[-1]) ** 2
        padded += F.interpolate(cam, size=padded.shape[-2:], mode="bilinear") / cell_area
    heat = padded[0, 0, :height, :width].float().cpu()
    peak = float(heat.max())
    heat = heat / peak if peak > 0 else torch.zeros_like(heat)
    return BoxSaliency(
        heat=heat.numpy().astype(np.float32),
        tag_index=int(tag_index),
        score=float(target.detach()),
        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
    )


def _location_scores(
    model: Detector, images: Any, stages: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every location's per-tag score (L, T) and decoded box (L, 4), in the transformed
    image's pixels, before any threshold or suppression (torchvision's postprocess, unfused)."""
    pyramid = model.backbone.fpn(OrderedDict((str(i), f) for i, f in enumerate(stages)))
    features = list(pyramid.values())
    outputs = model.head(features)
    anchors = model.anchor_generator(images, features)[0]
    regression = outputs["bbox_regression"][0]
    logits = outputs["cls_logits"][0]
    if "bbox_ctrness" in outputs:  # FCOS
        scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(outputs["bbox_ctrness"][0]))
        boxes = model.box_coder.decode(regression, anchors)
    else:  # RetinaNet
        scores = torch.sigmoid(logits)
        boxes = model.box_coder.decode_single(regression, anchors)
    return scores, boxes


def best_box_scores(detections: Sequence[Sequence[Detection]], num_tags: int) -> np.ndarray:
    """(N, num_tags) float32: per image, each tag's most confident box (0 without one) — a
    detector's per-image tag scores, which context reliance compares with and without masks."""
    best = np.zeros((len(detections), num_tags), dtype=np.float32)
    for row, found in enumerate(detections):
        for tag, probability, *_ in found:
            best[row, int(tag)] = max(best[row, int(tag)], float(probability))
    return best


class DetectorSaliency:
    """A trained detector built once, for box Grad-CAM; `explain` mutates nothing."""

    def __init__(self, artifact: DetectorArtifact) -> None:
        self.config = artifact.config
        self.model = artifact.build().requires_grad_(False)

    def explain(
        self,
        image: Image.Image,
        *,
        tag_index: int | None = None,
        box: NormalizedBox | None = None,
    ) -> BoxSaliency | None:
        return box_grad_cam(self.model, image, self.config, tag_index=tag_index, box=box)
