"""A trained classifier as one file, and a fast reusable Predictor for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image

from .backbones import build_feature_extractor, get_backbone
from .features import embed_pil, stock_engine
from .inference import Engine, EngineName, build_engine
from .quick import LinearHead, head_probabilities

ARTIFACT_FORMAT = 1


@dataclass
class ClassifierArtifact:
    """Everything needed to predict: backbone name (+ fine-tuned weights or None for stock
    pretrained ones), the head, the tag order its columns follow, and the preprocessing version.

    head_weight is (T+1, D) for multiclass (last row = background, never reported) and (T, D)
    for multilabel.
    """

    backbone: str
    multilabel: bool
    tag_keys: list[str]
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    backbone_state: dict[str, torch.Tensor] | None
    preprocessing_version: int
    threshold: float = 0.5

    @classmethod
    def from_quick(
        cls,
        head: LinearHead,
        *,
        backbone: str,
        tag_keys: Sequence[str],
        preprocessing_version: int,
        threshold: float = 0.5,
    ) -> ClassifierArtifact:
        """Wrap a quick-training head (stock pretrained backbone)."""
        return cls(
            backbone=backbone,
            multilabel=head.multilabel,
            tag_keys=list(tag_keys),
            head_weight=head.weight.detach().clone(),
            head_bias=head.bias.detach().clone(),
            backbone_state=None,
            preprocessing_version=preprocessing_version,
            threshold=threshold,
        )


def save_artifact(artifact: ClassifierArtifact, fileobj: BinaryIO) -> None:
    """Write the artifact as one torch.save dict (callers write to tmp, then os.replace)."""
    payload: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "backbone": artifact.backbone,
        "multilabel": artifact.multilabel,
        "tag_keys": list(artifact.tag_keys),
        "head_weight": artifact.head_weight.detach().to(torch.float32).contiguous(),
        "head_bias": artifact.head_bias.detach().to(torch.float32).contiguous(),
        "backbone_state": artifact.backbone_state,
        "preprocessing_version": artifact.preprocessing_version,
        "threshold": float(artifact.threshold),
    }
    torch.save(payload, fileobj)


def load_artifact(fileobj: BinaryIO) -> ClassifierArtifact:
    """Read an artifact written by save_artifact (weights_only: no code runs on load)."""
    payload = torch.load(fileobj, map_location="cpu", weights_only=True)
    if payload.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"Unsupported classifier artifact format {payload.get('format')!r}.")
    return ClassifierArtifact(
        backbone=payload["backbone"],
        multilabel=bool(payload["multilabel"]),
        tag_keys=list(payload["tag_keys"]),
        head_weight=payload["head_weight"],
        head_bias=payload["head_bias"],
        backbone_state=payload["backbone_state"],
        preprocessing_version=int(payload["preprocessing_version"]),
        threshold=float(payload["threshold"]),
    )


class Predictor:
    """Builds the backbone's fastest inference engine once (ONNX Runtime, see inference.py);
    predict/embed are then safe to call from several threads at once.
    """

    def __init__(
        self,
        artifact: ClassifierArtifact,
        *,
        engine: EngineName = "auto",
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.artifact = artifact
        spec = get_backbone(artifact.backbone)
        self.engine: Engine
        if artifact.backbone_state is None and engine == "auto":
            # Shared weights: one engine per backbone, thread count and device.
            self.engine = stock_engine(artifact.backbone, threads=threads, device=device)
        else:
            extractor = build_feature_extractor(artifact.backbone)
            if artifact.backbone_state is not None:
                extractor.load_state_dict(artifact.backbone_state)
            self.engine = build_engine(extractor, spec, engine, threads=threads, device=device)
        self._weight = artifact.head_weight.to(torch.float32)
        self._bias = artifact.head_bias.to(torch.float32)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Pooled embeddings (N, D) float32."""
        return embed_pil(self.engine, images, self.artifact.backbone)

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Tag probabilities (N, T) float32 in artifact.tag_keys order."""
        features = torch.from_numpy(self.embed(images))
        return head_probabilities(
            features, self._weight, self._bias, multilabel=self.artifact.multilabel
        )

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Tag probabilities from already computed embeddings (N, D)."""
        return head_probabilities(
            torch.as_tensor(np.asarray(features), dtype=torch.float32),
            self._weight,
            self._bias,
            multilabel=self.artifact.multilabel,
        )
