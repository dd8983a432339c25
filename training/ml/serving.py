"""A trained iteration's serving model: ONNX graphs run by ONNX Runtime, numpy and Pillow.

This module imports no torch, on purpose: it is what the web process predicts with, and
`import torch` alone is 512 MB of RSS there (bench/memory.py --engines). The worker, which has
torch, writes the serving file once per iteration (training.ml.serving_build); the web process
only reads it.

The serving file is a zip next to the iteration's artifact (`serving_name`):
- manifest.json: the kind, the input size, the tag count and, for detection, the resize rule;
- model.onnx: classification: uint8 (N,S,S,3) -> probabilities (N,T) and the pooled
  embedding (N,D) in one pass (what the stored-prediction ranking keeps); detection: uint8
  (H,W,3), already resized to the detector's size -> boxes (K,4) px, scores (K,), labels (K,);
- embed.onnx (detection only): the stock backbone, uint8 (N,S,S,3) -> (N,D), the embedding the
  detector path has always ranked diversity with.
Preprocessing is training.ml.decode's, the same functions training runs.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .decode import detector_size, resize_center_crop

SERVING_FORMAT = "loupe-serving"
SERVING_VERSION = 1

Box = tuple[int, float, float, float, float, float]


@dataclass(frozen=True)
class ModelOutput:
    """One image's raw outputs, in the artifact's tag-index order."""

    probabilities: np.ndarray  # (T,) float32: per tag (detection: its best box, 0 without one)
    boxes: list[Box]  # detection only, after NMS
    embedding: np.ndarray  # (D,) float32 pooled backbone features
    # Detection run with `mirror=True`: the boxes found in the horizontally flipped image, in
    # its coordinates (training.ml.uncertainty.flip_disagreement un-flips them). None: not run.
    mirrored_boxes: list[Box] | None = None


def serving_name(artifact_name: str) -> str:
    """Where the serving file of the artifact stored as `artifact_name` lives (same folder)."""
    folder, base = posixpath.split(artifact_name)
    return posixpath.join(folder, f"{posixpath.splitext(base)[0]}.serving.zip")


def _session(model: bytes, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Settings as training.ml.inference's engine: the prediction API runs one image per call on
    # every core at once, so a small intra-op pool and no spinning (see build_engine).
    options.intra_op_num_threads = max(1, threads or os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class ServingModel:
    """A classifier or detector from its serving file, ready to run one PIL image at a time
    from any thread (ONNX Runtime sessions keep no state between calls)."""

    def __init__(self, payload: bytes, *, threads: int | None = None) -> None:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            if manifest.get("format") != SERVING_FORMAT or manifest.get("version") != 1:
                raise ValueError("Not a Loupe serving file of a version this Loupe reads.")
            self._model = _session(archive.read("model.onnx"), threads)
            self._embed = (
                _session(archive.read("embed.onnx"), threads)
                if manifest["type"] == "detection"
                else None
            )
        self.manifest: dict[str, Any] = manifest
        self.is_detector = manifest["type"] == "detection"
        self.backbone: str = manifest["backbone"]
        self.input_size: int = int(manifest["input_size"])  # the backbone's square input
        self.tag_count: int = int(manifest["tag_count"])

    def run(self, image: Image.Image, *, mirror: bool = False) -> ModelOutput:
        """One image's outputs; `mirror` (detection only) also runs its mirror image, for the
        flip-disagreement signal of Most gain."""
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        if not self.is_detector:
            pixels = resize_center_crop(rgb, self.input_size)[None]
            probabilities, embedding = self._model.run(None, {"pixels": pixels})
            return ModelOutput(
                np.asarray(probabilities[0], dtype=np.float32),
                [],
                np.asarray(embedding[0], dtype=np.float32),
            )
        boxes = self._detect(rgb)
        mirrored = self._detect(ImageOps.mirror(rgb)) if mirror else None
        best = np.zeros(self.tag_count, dtype=np.float32)
        for box in boxes:
            best[box[0]] = max(best[box[0]], box[1])
        assert self._embed is not None
        pixels = resize_center_crop(rgb, self.input_size)[None]
        embedding = np.asarray(self._embed.run(None, {"pixels": pixels})[0][0], dtype=np.float32)
        return ModelOutput(best, boxes, embedding, mirrored)

    def _detect(self, image: Image.Image) -> list[Box]:
        """(tag, probability, left, top, width, height) normalised, highest first, as
        training.ml.detection.evaluate.detect answers."""
        resize = self.manifest["resize"]
        size = detector_size(*image.size, resize["shorter_side_px"], resize["max_longer_side_px"])
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        width, height = image.size
        pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        boxes, scores, labels = self._model.run(None, {"pixels": pixels})
        order = np.argsort(-scores, kind="stable")
        scale = np.array([width, height, width, height], dtype=np.float64)
        normalised = np.clip(boxes[order].astype(np.float64) / scale, 0.0, 1.0)
        found: list[Box] = []
        for (x1, y1, x2, y2), score, label in zip(
            normalised.tolist(), scores[order].tolist(), labels[order].tolist(), strict=True
        ):
            if x2 - x1 > 0 and y2 - y1 > 0:
                found.append((int(label), float(score), x1, y1, x2 - x1, y2 - y1))
        return found
