"""What a caller chooses and gets back: the recipe an epoch follows and the fine-tuned result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..artifact import ClassifierArtifact
from ..preprocessing import PREPROCESSING_VERSION


@dataclass(frozen=True)
class FineTuneRecipe:
    """How fine_tune spends an epoch; the field defaults are the cached recipe, fine_tune's
    default (see above)."""

    own_resolution: bool = False  # train at the images' size when smaller than the input size
    frozen_blocks: int = 3  # the stem and this many blocks are frozen, their outputs cached
    cached: bool = True  # decode once into a uint8 cache (False: PIL augmentation every epoch)
    channels_last: bool = True  # the suffix step ~25 % faster on CPU (oneDNN's native layout)
    fused_optimizer: bool = True
    cache_limit_mb: float = 1500.0  # fewer frozen blocks when their outputs would not fit

    @classmethod
    def legacy(cls) -> FineTuneRecipe:
        """The recipe before issue 15: full network at the input size, PIL augmentation."""
        return cls(
            own_resolution=False,
            frozen_blocks=0,
            cached=False,
            channels_last=False,
            fused_optimizer=False,
        )


@dataclass(frozen=True)
class FineTuneResult:
    state: dict[str, torch.Tensor]  # "backbone.*" and "head.weight"/"head.bias" of the best epoch
    holdout_index: np.ndarray  # (M,) indices into refs of the held-out images
    holdout_scores: np.ndarray  # (M, T) float32 probabilities of the best checkpoint
    epochs: int  # fine-tuning epochs completed
    best_epoch: int  # 0 = the linear-probe start was never beaten
    holdout_losses: tuple[float, ...] = ()  # per epoch, index 0 = the linear-probe start
    spent_s: Mapping[str, float] = field(default_factory=dict)  # seconds per phase
    train_size: int = 0  # the side the training images were fed at

    def to_artifact(
        self,
        *,
        backbone: str,
        multilabel: bool,
        tag_keys: Sequence[str],
        threshold: float = 0.5,
    ) -> ClassifierArtifact:
        """The fine-tuned model as a ClassifierArtifact for save_artifact / Predictor."""
        prefix = "backbone."
        backbone_state = {
            name[len(prefix) :]: tensor
            for name, tensor in self.state.items()
            if name.startswith(prefix)
        }
        return ClassifierArtifact(
            backbone=backbone,
            multilabel=multilabel,
            tag_keys=list(tag_keys),
            head_weight=self.state["head.weight"],
            head_bias=self.state["head.bias"],
            backbone_state=backbone_state,
            preprocessing_version=PREPROCESSING_VERSION,
            threshold=threshold,
        )
