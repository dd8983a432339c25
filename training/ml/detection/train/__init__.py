"""Detector training inside a wall-clock budget.

Default recipe (measured in bench/RESULTS.md): the backbone stays frozen and each training image
is pushed through it once per cached view (cached.py), within a preparation deadline
(prepare.py: training starts on the images ready by then), then the FPN and head train for as
many epochs as the budget allows. ``TrainOptions(frozen_backbone=False)`` fine-tunes end to end
instead (backbone blocks from ``DetectorConfig.trainable_from_block`` on, at a tenth of the
head's learning rate, on cached views of the frozen stem and early blocks' output): about 5x
fewer epochs a minute on a CPU, and at a 10-minute budget on a project-shaped set it scored
below the frozen recipe (held-out mAP@0.5 0.917 vs 0.953, bench/detection_recipes.py), which
is why quick and advanced detection training both keep the backbone frozen. Both use AdamW, a
linear warm-up then cosine decay over the *time* budget (a slow machine still anneals instead of
being cut off at full rate), gradient clipping, augment.py's box-aware augmentation and
multi-scale resizing.

The held-out split (~20%, stratified by tag) is scored once, with the final weights: choosing an
epoch by held-out mAP would bias the very figure we report, so ``best_epoch == epochs``.
"""

from .options import DetectorResult, ProgressFn, TrainOptions
from .run import train_detector

__all__ = ["DetectorResult", "ProgressFn", "TrainOptions", "train_detector"]
