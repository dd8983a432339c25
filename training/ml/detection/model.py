"""The detector: FCOS on a feature pyramid over the pretrained EfficientNet-Lite stages.

Why FCOS: measured against RetinaNet on the same pyramid, data and 600 s CPU budget
(bench/RESULTS.md, "Issue 4: detection"), FCOS reached held-out mAP@0.5 0.975 / mAP 0.761
against RetinaNet's 0.735 / 0.561, although RetinaNet had more CPU time in its run; being
anchor-free, it predicts once per location instead of nine times. The pyramid takes the
backbone's stride 8/16/32 stages (P3-P5) and adds P6/P7 by strided convolutions, as in the FCOS
paper; the FPN and head are narrowed (64 channels, 2 convs per tower): on this CPU a 64-channel
4-conv head already took ~1/5 of the backbone's training step, and 256 channels would be 16x
its multiply-adds, more than the whole backbone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, TypeAlias

import torch
from timm.models import FeatureListNet
from torch import nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from ..backbones import get_backbone

ARTIFACT_FORMAT = 1

# Backbone stages feeding the pyramid: timm feature indices of the stride 8, 16 and 32 maps.
_PYRAMID_STAGES = (2, 3, 4)

# Where the FCOS head's box distances start, in anchor sizes (the level's stride). torchvision's
# head passes them through a ReLU from zero-centred initial weights, so about half of them start
# dead, and on a small training set the regression could stall: every box a fraction of its
# object's size, test mAP@0.5 near 0 on 10-30 labeled images for some draws of them (bench/
# detection_small_sets.py and bench/RESULTS.md). A level is assigned objects reaching 4 to 8
# anchor sizes from their centre; starting at 4 keeps every output in the ReLU's live range.
# Module state so that the benches (detection_small_sets.py, detection_training.py
# --regression-start) can build torchvision's start (0) beside it.
REGRESSION_START = 4.0


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and inference settings; stored in the artifact so prediction matches
    training exactly."""

    architecture: str = "fcos"  # or "retinanet" (kept for the comparison in bench/)
    image_size_px: int = 320  # shorter side at inference (and the largest training scale)
    max_size_px: int = 448  # longer side cap; 640x480 photographs become 427x320
    train_scales: tuple[float, ...] = (0.8, 0.9, 1.0)  # multi-scale training, x image_size_px
    fpn_channels: int = 64
    head_convs: int = 2
    # Blocks before this index stay frozen: the stride 2-4 layers hold generic edges and cost
    # the most per FLOP to backpropagate through (large maps, depthwise convolutions).
    trainable_from_block: int = 2
    score_threshold: float = 0.05  # lowest probability kept (the slider filters further)
    nms_iou: float = 0.5
    max_detections: int = 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectorConfig:
        values = dict(values)
        values["train_scales"] = tuple(values["train_scales"])
        return cls(**values)


class PyramidBackbone(nn.Module):
    """Normalised (N, 3, H, W) -> OrderedDict of 5 maps (P3-P7), ``fpn_channels`` each."""

    def __init__(self, backbone: str, fpn_channels: int) -> None:
        super().__init__()
        self.body = FeatureListNet(
            get_backbone(backbone).build(), out_indices=_PYRAMID_STAGES, flatten_sequential=True
        )
        self.fpn = FeaturePyramidNetwork(
            self.body.feature_info.channels(),
            fpn_channels,
            extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels),
        )
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(x)
        result: OrderedDict[str, torch.Tensor] = self.fpn(
            OrderedDict((str(i), f) for i, f in enumerate(features))
        )
        return result

    def prefix(self, x: torch.Tensor, block: int) -> list[torch.Tensor]:
        """The stem and the blocks before ``block``, the layers ``freeze_before(block)`` holds
        fixed, whose output end-to-end training computes once per cached view (cached.py):
        the pyramid maps they already produce, then the input of ``block`` (unless it is the
        last of those maps)."""
        cut = self._index_of(block)
        maps = []
        for name, module in list(self.body.items())[:cut]:
            x = module(x)
            if name in self.body.return_layers:
                maps.append(x)
        if not maps or maps[-1] is not x:
            maps.append(x)
        return maps

    def pyramid_inputs_from(self, prefix: Sequence[torch.Tensor], block: int) -> list[torch.Tensor]:
        """The stride 8, 16 and 32 maps the body returns for an image, given
        ``prefix(image, block)`` (or the same maps padded): the rest of the body runs."""
        names = list(self.body.keys())
        cut = self._index_of(block)
        done = sum(name in self.body.return_layers for name in names[:cut])
        maps, x = list(prefix[:done]), prefix[-1]
        for name in names[cut:]:
            x = self.body[name](x)
            if name in self.body.return_layers:
                maps.append(x)
        return maps

    def _index_of(self, block: int) -> int:
        names = list(self.body.keys())
        if f"blocks_{block}" not in names:
            raise ValueError(f"The backbone has no block {block}.")
        return names.index(f"blocks_{block}")

    def freeze_before(self, block: int) -> None:
        """Stop gradients through the stem and blocks before ``block``; BatchNorm everywhere
        in the backbone keeps its ImageNet statistics (set by ``train_mode``)."""
        frozen_prefixes = ("conv_stem", "bn1", *(f"blocks_{i}" for i in range(block)))
        for name, parameter in self.body.named_parameters():
            if name.startswith(frozen_prefixes):
                parameter.requires_grad_(False)


Detector: TypeAlias = FCOS | RetinaNet
ARCHITECTURES = ("fcos", "retinanet")


def build_detector(
    backbone: str, num_tags: int, config: DetectorConfig = DetectorConfig()
) -> Detector:
    """A fresh detector for ``num_tags`` tags on the ImageNet-pretrained ``backbone``.

    Input: a list of float (3, H, W) images in [0, 1] of any size; the model resizes them
    (shorter side ``image_size_px``) and normalises with the backbone's mean and std.
    """
    if num_tags < 1:
        raise ValueError(f"num_tags must be at least 1, got {num_tags}.")
    if config.architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {ARCHITECTURES}, not {config.architecture!r}."
        )
    spec = get_backbone(backbone)
    body = PyramidBackbone(backbone, config.fpn_channels)
    body.freeze_before(config.trainable_from_block)
    train_sizes = tuple(round(config.image_size_px * s) for s in config.train_scales)
    common: dict[str, Any] = {
        # In training GeneralizedRCNNTransform picks one of these per image; in eval the last.
        "min_size": (*train_sizes, config.image_size_px),
        "max_size": config.max_size_px,
        "image_mean": list(spec.mean),
        "image_std": list(spec.std),
        "score_thresh": config.score_threshold,
        "nms_thresh": config.nms_iou,
        "detections_per_img": config.max_detections,
    }
    if config.architecture == "retinanet":
        # The paper's anchors: 3 scales x 3 aspect ratios per level, base 4x the stride.
        sizes = tuple(
            tuple(round(base * 2 ** (k / 3)) for k in range(3)) for base in (32, 64, 128, 256, 512)
        )
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
        retina_head = RetinaNetHead(
            config.fpn_channels, anchors.num_anchors_per_location()[0], num_tags
        )
        return RetinaNet(body, num_tags, anchor_generator=anchors, head=retina_head, **common)
    # One anchor per location whose size equals the level's stride: FCOS uses these only to
    # assign objects to levels (objects 4x..8x the anchor go to that level).
    anchor_generator = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)
    head = FCOSHead(
        config.fpn_channels,
        anchor_generator.num_anchors_per_location()[0],
        num_tags,
        num_convs=config.head_convs,
    )
    nn.init.constant_(head.regression_head.bbox_reg.bias, REGRESSION_START)
    return FCOS(body, num_tags, anchor_generator=anchor_generator, head=head, **common)


def train_mode(model: Detector) -> None:
    """Training mode with the backbone's BatchNorm layers frozen: CPU batches of 2-8 images
    give batch statistics too noisy to replace the ImageNet ones."""
    model.train()
    for module in model.backbone.body.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@dataclass
class DetectorArtifact:
    """A trained detector as plain data: backbone name, tag count, config and weights."""

    backbone: str
    num_tags: int
    config: DetectorConfig
    state: dict[str, torch.Tensor]

    def build(self) -> Detector:
        """The detector with these weights, in eval mode."""
        model = build_detector(self.backbone, self.num_tags, self.config)
        model.load_state_dict(self.state)
        return model.eval()


def save_detector_artifact(artifact: DetectorArtifact, fileobj: BinaryIO) -> None:
    """Write the artifact as one torch.save dict (callers write to tmp, then os.replace)."""
    torch.save(
        {
            "format": ARTIFACT_FORMAT,
            "kind": "detector",
            "backbone": artifact.backbone,
            "num_tags": artifact.num_tags,
            "config": artifact.config.to_dict(),
            "state": {k: v.detach().contiguous() for k, v in artifact.state.items()},
        },
        fileobj,
    )


def load_detector_artifact(fileobj: BinaryIO) -> DetectorArtifact:
    """Read an artifact written by save_detector_artifact (weights_only: no code runs)."""
    payload = torch.load(fileobj, map_location="cpu", weights_only=True)
    if payload.get("format") != ARTIFACT_FORMAT or payload.get("kind") != "detector":
        raise ValueError(
            f"Unsupported detector artifact (format {payload.get('format')!r}, "
            f"kind {payload.get('kind')!r})."
        )
    return DetectorArtifact(
        backbone=str(payload["backbone"]),
        num_tags=int(payload["num_tags"]),
        config=DetectorConfig.from_dict(payload["config"]),
        state=dict(payload["state"]),
    )
