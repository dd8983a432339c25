"""Object detection: an FCOS detector on the pretrained backbone, trained inside a budget.

Boxes cross this package's boundary in Custom Vision's normalised convention: ground truth as
(tag index, left, top, width, height), detections as (tag index, probability, left, top,
width, height), all coordinates fractions of the image's width and height.
"""

from .augment import AugmentConfig, NormalizedBox, TrainAugment
from .evaluate import detect, holdout_split
from .model import (
    DetectorArtifact,
    DetectorConfig,
    build_detector,
    load_detector_artifact,
    save_detector_artifact,
)
from .predict import DetectorPredictor
from .train import DetectorResult, TrainOptions, train_detector

__all__ = [
    "AugmentConfig",
    "DetectorArtifact",
    "DetectorConfig",
    "DetectorPredictor",
    "DetectorResult",
    "NormalizedBox",
    "TrainAugment",
    "TrainOptions",
    "build_detector",
    "detect",
    "holdout_split",
    "load_detector_artifact",
    "save_detector_artifact",
    "train_detector",
]
