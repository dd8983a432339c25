"""The torch prediction model: how the web process predicted before serving files existed.

Kept for iterations trained before then, until a worker has written their serving file
(predictions.model_cache), and as the reference the serving model's parity tests compare
against (tests/ml/test_serving.py). Same outputs as training.ml.serving.ServingModel.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps

from .artifact import ClassifierArtifact, Predictor, load_artifact
from .backbones import get_backbone
from .detection import DetectorPredictor, load_detector_artifact
from .features import embed_pil, stock_engine
from .serving import ModelOutput


class LoadedModel:
    """A classifier or detector ready to run on one PIL image at a time, from any thread."""

    def __init__(self, payload: bytes, *, threads: int | None = None, device: str = "cpu") -> None:
        self.is_detector = _is_detector(payload)
        self.threads = threads
        self.device = device
        self._classifier: Predictor | None = None
        self._detector: DetectorPredictor | None = None
        if self.is_detector:
            artifact = load_detector_artifact(io.BytesIO(payload))
            self._detector = DetectorPredictor(artifact, device=device)
            self.backbone = artifact.backbone
            self.tag_count = artifact.num_tags
        else:
            classifier: ClassifierArtifact = load_artifact(io.BytesIO(payload))
            self._classifier = Predictor(classifier, threads=threads, device=device)
            self.backbone = classifier.backbone
            self.tag_count = len(classifier.tag_keys)
        self.input_size = get_backbone(self.backbone).input_size

    def run(self, image: Image.Image, *, mirror: bool = False) -> ModelOutput:
        """One image's outputs; `mirror` (detection only) also runs its mirror image, in the
        same batch, for the flip-disagreement signal of Most gain."""
        if self._classifier is not None:
            embedding = self._classifier.embed([image])
            probabilities = self._classifier.predict_features(embedding)[0]
            return ModelOutput(np.asarray(probabilities, dtype=np.float32), [], embedding[0])
        assert self._detector is not None
        found = self._detector.predict([image, ImageOps.mirror(image)] if mirror else [image])
        boxes = [tuple(box) for box in found[0]]
        best = np.zeros(self.tag_count, dtype=np.float32)
        for box in boxes:
            best[int(box[0])] = max(best[int(box[0])], float(box[1]))
        # The detector has no pooled head: the stock backbone's embedding ranks diversity.
        engine = stock_engine(self.backbone, threads=self.threads, device=self.device)
        embedding = embed_pil(engine, [image], self.backbone)[0]
        mirrored = [tuple(box) for box in found[1]] if mirror else None
        return ModelOutput(best, boxes, embedding, mirrored)  # type: ignore[arg-type]


def _is_detector(payload: bytes) -> bool:
    meta = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    return isinstance(meta, dict) and meta.get("kind") == "detector"
