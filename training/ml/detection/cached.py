"""Frozen-backbone training on cached backbone features: the detector's quick mode.

On a 2-core CPU the backbone's forward and backward passes are ~90% of a training step (see
bench/RESULTS.md). With the backbone frozen, each training image is pushed through it once per
*view* (view 0 as is at the inference scale, later views augmented by TrainAugment at a random
training scale), the stride 8/16/32 maps are kept in memory as float16, and every step only
runs the FPN and the head: an order of magnitude more epochs fit in the same budget.

End-to-end training caches views the same way, one step earlier: the output of the frozen stem
and early blocks (``PyramidBackbone.prefix``), so every step runs only the trainable blocks, the
FPN and the head. That takes the frozen layers' forward pass out of every step (block 1, at
stride 2-4, was about half of the body's forward time on the CPU, bench/RESULTS.md), and
decoding and augmenting with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.models.detection import FCOS
from torchvision.models.detection.image_list import ImageList
from torchvision.transforms.v2 import functional as TF

from ..device import to_device
from .augment import TrainAugment
from .model import Detector

# Above this many bytes of cached maps, fewer views are kept (one at least).
MAX_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class CachedView:
    """One view of one image: backbone maps (float16, (C, h, w) per level; for end-to-end
    training what ``PyramidBackbone.prefix`` returns), the resized image size (height, width)
    and its boxes (float32 (N, 4) xyxy in resized pixels) and labels."""

    features: tuple[torch.Tensor, ...]
    image_size: tuple[int, int]
    boxes: torch.Tensor
    labels: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.features)


ViewSource = Callable[[int], tuple[torch.Tensor, tv_tensors.BoundingBoxes, torch.Tensor]]


def cache_view(
    model: Detector,
    image: torch.Tensor,
    boxes: tv_tensors.BoundingBoxes,
    labels: torch.Tensor,
    *,
    augment: TrainAugment | None,
    body: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None,
) -> CachedView:
    """Backbone maps of ``image`` (uint8 (3, H, W)), augmented and at a random training scale
    when ``augment`` is given, else unchanged at the inference scale. ``body`` runs the frozen
    backbone (default: the model's own, in PyTorch)."""
    if augment is not None:
        image, boxes, labels = augment(image, boxes, labels)
    transform = model.transform
    transform.train(augment is not None)  # training mode picks a random scale
    device = next(model.parameters()).device
    target = {"boxes": boxes.as_subclass(torch.Tensor).to(device), "labels": labels.to(device)}
    pixels = TF.to_dtype(image.to(device), torch.float32, scale=True)
    with torch.inference_mode():
        image_list, targets = transform([pixels], [target])
        maps = (body or model.backbone.body)(image_list.tensors)
    assert targets is not None
    height, width = image_list.image_sizes[0]
    return CachedView(
        features=tuple(m[0].to("cpu", torch.float16).clone() for m in maps),
        image_size=(int(height), int(width)),
        boxes=targets[0]["boxes"].to("cpu", copy=True),
        labels=targets[0]["labels"].to("cpu", copy=True),
    )


def cached_losses(
    model: Detector, views: Sequence[CachedView], *, from_block: int | None = None
) -> dict[str, torch.Tensor]:
    """The detector's training losses for a batch of cached views: FPN + head only, or, with
    ``from_block`` (views of ``prefix(image, from_block)``), the backbone's blocks from there
    on as well."""
    device = next(model.parameters()).device
    padded = [
        to_device(_padded([v.features[level] for v in views]), device)
        for level in range(len(views[0].features))
    ]
    if from_block is not None:
        padded = model.backbone.pyramid_inputs_from(padded, from_block)
    batch = OrderedDict((str(level), maps) for level, maps in enumerate(padded))
    features = list(model.backbone.fpn(batch).values())
    head_outputs = model.head(features)
    # The anchor generator reads only the padded batch's shape, dtype and device.
    finest = batch["0"]  # stride 8
    padded_size = (finest.shape[2] * 8, finest.shape[3] * 8)
    images = ImageList(
        torch.zeros(1, 1, 1, 1, device=device).expand(len(views), 3, *padded_size),
        [v.image_size for v in views],
    )
    anchors = model.anchor_generator(images, features)
    targets = [{"boxes": v.boxes.to(device), "labels": v.labels.to(device)} for v in views]
    if isinstance(model, FCOS):
        per_level = [f.size(2) * f.size(3) for f in features]
        losses: dict[str, torch.Tensor] = model.compute_loss(
            targets, head_outputs, anchors, per_level
        )
    else:
        losses = model.compute_loss(targets, head_outputs, anchors)
    return losses


def _padded(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """float32 (N, C, h, w) batch of (C, h_i, w_i) maps, zero-padded at the bottom and right
    as the detector's transform pads images."""
    channels = maps[0].shape[0]
    height = max(m.shape[1] for m in maps)
    width = max(m.shape[2] for m in maps)
    batch = torch.zeros(len(maps), channels, height, width)
    for index, m in enumerate(maps):
        batch[index, :, : m.shape[1], : m.shape[2]] = m.to(torch.float32)
    return batch
