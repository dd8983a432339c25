"""A reusable predictor for a trained detector artifact."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from ..detection_metrics import Detection
from ..device import resolve_device
from .evaluate import detect
from .model import DetectorArtifact


class DetectorPredictor:
    """Builds the detector once, on ``device`` ("cpu", "cuda" or "auto"); ``predict`` is then
    safe to call from several threads (eval mode, inference_mode: a forward pass mutates
    nothing)."""

    def __init__(self, artifact: DetectorArtifact, *, device: str = "cpu") -> None:
        self.artifact = artifact
        self.model = artifact.build().to(resolve_device(device))

    def predict(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """Per image, boxes after per-tag non-maximum suppression, highest probability first:
        (tag index, probability in 0..1, left, top, width, height), box normalised to 0..1."""
        return detect(self.model, images, self.artifact.config)
