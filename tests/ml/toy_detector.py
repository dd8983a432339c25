"""A toy FCOS detector for saliency tests: torchvision's FCOS (the production class) on a
tiny CNN shaped like training.ml.detection.model.PyramidBackbone (`.body` -> stride 8/16/32
maps, `.fpn` -> P3-P7), trained in seconds on 160 px images (at 128 px P7 is 1x1, which the
head's GroupNorm refuses for one image) with one box in a fixed spot.

Two data sets: "object" draws a checkerboard patch inside the box and nothing else tells the
box is there; "background" draws no object at all (the box holds the same noise as the rest)
but a green band on the left of every positive image, so the model can only learn the band.
Negatives (every third image) have neither and no box.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from training.ml.detection import DetectorConfig

SIZE = 160
BOX_PX = (88, 32, 120, 64)  # x1, y1, x2, y2 of the fixed box
BOX = (88 / SIZE, 32 / SIZE, 32 / SIZE, 32 / SIZE)  # normalised left, top, width, height
CONFIG = DetectorConfig(image_size_px=SIZE, max_size_px=SIZE, train_scales=(1.0,))


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU())


class _Body(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.s8 = nn.Sequential(_conv(3, 16, 2), _conv(16, 16, 2), _conv(16, 24, 2))
        self.s16 = nn.Sequential(_conv(24, 32, 2), _conv(32, 32, 1))
        self.s32 = nn.Sequential(_conv(32, 48, 2), _conv(48, 48, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.s8(x)
        c4 = self.s16(c3)
        return [c3, c4, self.s32(c4)]


class _Pyramid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _Body()
        self.fpn = FeaturePyramidNetwork([24, 32, 48], 32, extra_blocks=LastLevelP6P7(32, 32))
        self.out_channels = 32

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.body(x)
        result: OrderedDict[str, torch.Tensor] = self.fpn(
            OrderedDict((str(i), f) for i, f in enumerate(maps))
        )
        return result


def build_toy() -> FCOS:
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)
    head = FCOSHead(32, 1, 1, num_convs=1)
    return FCOS(
        _Pyramid(),
        1,
        anchor_generator=anchors,
        head=head,
        min_size=SIZE,
        max_size=SIZE,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
        score_thresh=CONFIG.score_threshold,
        nms_thresh=CONFIG.nms_iou,
        detections_per_img=CONFIG.max_detections,
    )


def make_image(kind: str, positive: bool, rng: np.random.Generator) -> np.ndarray:
    pixels = rng.integers(70, 150, size=(SIZE, SIZE, 3), dtype=np.uint8)
    if positive and kind == "object":
        x1, y1, x2, y2 = BOX_PX
        yy, xx = np.mgrid[y1:y2, x1:x2]
        checker = ((yy // 4 + xx // 4) % 2).astype(bool)
        pixels[y1:y2, x1:x2] = np.where(checker[..., None], [250, 40, 40], [20, 20, 200])
    if positive and kind == "background":
        pixels[:, :48] = [40, 190, 60]
    return pixels


def make_set(kind: str, count: int, seed: int) -> tuple[list[np.ndarray], list[bool]]:
    rng = np.random.default_rng(seed)
    positives = [index % 3 != 2 for index in range(count)]
    return [make_image(kind, positive, rng) for positive in positives], positives


def train_toy(kind: str, steps: int = 160, seed: int = 0) -> FCOS:
    torch.manual_seed(seed)
    images, positives = make_set(kind, 24, seed)
    tensors = [torch.tensor(image).permute(2, 0, 1).float() / 255 for image in images]
    box = torch.tensor([BOX_PX], dtype=torch.float32)
    targets = [
        {"boxes": box, "labels": torch.zeros(1, dtype=torch.int64)}
        if positive
        else {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
        for positive in positives
    ]
    model = build_toy()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = np.random.default_rng(seed)
    for _ in range(steps):
        batch = order.choice(len(tensors), size=8, replace=False)
        losses = model([tensors[i] for i in batch], [targets[i] for i in batch])
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
    return model.eval()


def pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels)
