"""A trained iteration's serving model: ONNX graphs run by ONNX Runtime, numpy and Pillow.

This module imports no torch, on purpose: it is what the web process predicts with, and
`import torch` alone is 512 MB of RSS there (bench/memory.py --engines). The worker, which has
torch, writes the serving file once per iteration (training.ml.serving_build); the web process
only reads it.

The serving file is a zip next to the iteration's artifact (`serving_name`):
- manifest.json: the kind, the input size, the tag count and, for detection, the resize rule;
- a quick classifier (stock backbone): head.npz, its linear head as arrays, applied in numpy to
  the shared stock graph's embedding (what the torch path ran: the stock engine, then the head);
- a fine-tuned classifier: model.onnx, uint8 (N,S,S,3) -> probabilities (N,T) and the pooled
  embedding (N,D) in one pass (the embedding is what the stored-prediction ranking keeps);
- a detector: model.onnx, uint8 (H,W,3) already resized to the detector's size -> boxes (K,4)
  px, scores (K,), labels (K,); its embedding comes from the shared stock graph, as before.
The shared stock graph (manifest "stock_graph", one file per backbone in storage, uint8
(N,S,S,3) -> (N,D)) is read through the caller's `read` and kept once per process.
Preprocessing is training.ml.decode's, the same functions training runs.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import threading
import zipfile
from collections.abc import Callable
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


_shared: dict[tuple[str, int | None], Any] = {}
_shared_lock = threading.Lock()


def _shared_session(name: str, read: Callable[[str], bytes], threads: int | None) -> Any:
    """One session per shared stock graph and thread count in this process (its weights are the
    same for every iteration on that backbone)."""
    with _shared_lock:
        session = _shared.get((name, threads))
        if session is None:
            session = _session(read(name), threads)
            _shared[(name, threads)] = session
        return session


class ServingModel:
    """A classifier or detector from its serving file, ready to run one PIL image at a time
    from any thread (ONNX Runtime sessions keep no state between calls). `read` opens a shared
    file by its storage name (the stock graph)."""

    def __init__(
        self, payload: bytes, *, read: Callable[[str], bytes], threads: int | None = None
    ) -> None:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            if manifest.get("format") != SERVING_FORMAT or manifest.get("version") != 1:
                raise ValueError("Not a Loupe serving file of a version this Loupe reads.")
            names = set(archive.namelist())
            self._model = (
                _session(archive.read("model.onnx"), threads) if "model.onnx" in names else None
            )
            self._head: tuple[np.ndarray, np.ndarray] | None = None
            if "head.npz" in names:
                with np.load(io.BytesIO(archive.read("head.npz"))) as head:
                    self._head = (
                        np.asarray(head["weight"], np.float32),
                        np.asarray(head["bias"], np.float32),
                    )
        stock = manifest.get("stock_graph")
        self._stock = _shared_session(stock, read, threads) if stock else None
        self.manifest: dict[str, Any] = manifest
        self.is_detector = manifest["type"] == "detection"
        self.multilabel = bool(manifest.get("multilabel", False))
        self.backbone: str = manifest["backbone"]
        self.input_size: int = int(manifest["input_size"])  # the backbone's square input
        self.tag_count: int = int(manifest["tag_count"])

    def run(self, image: Image.Image, *, mirror: bool = False) -> ModelOutput:
        """One image's outputs; `mirror` (detection only) also runs its mirror image, for the
        flip-disagreement signal of Most gain."""
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        if not self.is_detector and self._head is None:  # one graph: both outputs
            assert self._model is not None
            pixels = resize_center_crop(rgb, self.input_size)[None]
            probabilities, embedding = self._model.run(None, {"pixels": pixels})
            return ModelOutput(
                np.asarray(probabilities[0], dtype=np.float32),
                [],
                np.asarray(embedding[0], dtype=np.float32),
            )
        assert self._stock is not None
        pixels = resize_center_crop(rgb, self.input_size)[None]
        embedding = np.ascontiguousarray(
            self._stock.run(None, {"pixels": pixels})[0][0], dtype=np.float32
        )
        if self._head is not None:
            return ModelOutput(self._head_probabilities(embedding), [], embedding)
        boxes = self._detect(rgb)
        mirrored = self._detect(ImageOps.mirror(rgb)) if mirror else None
        best = np.zeros(self.tag_count, dtype=np.float32)
        for box in boxes:
            best[box[0]] = max(best[box[0]], box[1])
        return ModelOutput(best, boxes, embedding, mirrored)

    def _head_probabilities(self, embedding: np.ndarray) -> np.ndarray:
        """training.ml.quick.head_probabilities in numpy: the linear head, then sigmoid
        (multilabel) or softmax without the last, background column (multiclass)."""
        assert self._head is not None
        weight, bias = self._head
        logits = (embedding[None, :] @ weight.T + bias)[0].astype(np.float64)
        probabilities: np.ndarray
        if self.multilabel:
            probabilities = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        else:
            shifted = np.exp(logits - logits.max())
            probabilities = (shifted / shifted.sum())[:-1].astype(np.float32)
        return probabilities

    def _detect(self, image: Image.Image) -> list[Box]:
        """(tag, probability, left, top, width, height) normalised, highest first, as
        training.ml.detection.evaluate.detect answers."""
        resize = self.manifest["resize"]
        size = detector_size(*image.size, resize["shorter_side_px"], resize["max_longer_side_px"])
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        width, height = image.size
        pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        assert self._model is not None
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
