"""What a detector training run takes (TrainOptions) and returns (DetectorResult)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ...detection_metrics import Detection
from ..augment import AugmentConfig
from ..model import DetectorArtifact, DetectorConfig

ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (defaults tuned by bench/detection.py on a 2-core CPU)."""

    batch_size: int = 4
    lr: float = 1e-3  # head and FPN; the backbone gets backbone_lr_ratio x this
    backbone_lr_ratio: float = 0.1
    weight_decay: float = 1e-4
    holdout_fraction: float = 0.2
    max_epochs: int = 200
    # Train the FPN and head on cached backbone maps (see cached.py); False fine-tunes end to
    # end, about 5x fewer epochs a minute on a CPU (bench/detection_recipes.py).
    frozen_backbone: bool = True
    # End to end: the frozen stem and early blocks run once per cached view, and each step
    # trains the later blocks, FPN and head on those maps (cached.py). False decodes, augments
    # and runs the whole network for every image at every step (the recipe before issue 15,
    # kept for bench/detection_recipes.py's comparison).
    cached_prefix: bool = True
    cached_views: int = 3  # view 0 plain, the rest augmented
    max_cache_share: float = 0.4  # extra views stop once caching would pass this budget share
    # Plain views stop at this share of the budget left after the scoring reserve: training
    # starts on what is ready rather than spending the budget on preparation alone.
    max_prepare_share: float = 0.6
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class DetectorResult:
    state: dict[str, torch.Tensor]  # detector state_dict of the returned weights
    holdout_index: np.ndarray  # (M,) int64 indices into refs of the held-out images
    holdout_detections: list[list[Detection]]  # per held-out image: (tag, p, l, t, w, h)
    epochs: int  # full passes over the prepared training images (a last partial one is not counted)
    best_epoch: int  # epoch of the returned weights: the last, since none is picked by score
    steps: int = 0
    # Mean training loss of each full epoch (augmented views): the only per-epoch figure, since
    # the held-out split is scored once, at the end.
    epoch_losses: tuple[float, ...] = ()
    config: DetectorConfig = field(default_factory=DetectorConfig)
    trained_images: int = 0  # training images with a prepared view (all, when none was cut)
    training_images: int = 0  # images in the training split
    maps_loaded: int = 0  # plain views loaded from the map store instead of computed
    # preparing_s, training_s, scoring_s, prepare_per_image_s (computed views only, else 0)
    timings: dict[str, float] = field(default_factory=dict)

    def to_artifact(self, *, backbone: str, num_tags: int) -> DetectorArtifact:
        """The trained detector as an artifact for save_detector_artifact / DetectorPredictor."""
        return DetectorArtifact(
            backbone=backbone, num_tags=num_tags, config=self.config, state=self.state
        )
