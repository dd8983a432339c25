"""Published models, loaded once per process and shared by every request thread.

Invariant: a cache entry is keyed by (iteration id, artifact file name), never by publish name.
Publishing another iteration under a name therefore needs no invalidation: the next request
resolves the name to the new iteration (one indexed query per request, see
services/predict.py) and loads that model, while requests already running finish on the model
they hold. Nothing is dropped: an entry leaves the cache only as least recently used, and a
request that still holds the evicted model keeps it alive until it returns.

Loading is serialised per key (two first requests load the model once; the other waits), and
the cache's own lock is held only for dictionary work, so loading one model never blocks
predictions on another. A worker killed mid-load leaves nothing behind: the cache is memory.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from training.ml.artifact import ClassifierArtifact, Predictor, load_artifact
from training.ml.detection import DetectorPredictor, load_detector_artifact
from training.ml.features import embed_pil, stock_engine

CacheKey = tuple[int, str]


@dataclass(frozen=True)
class ModelOutput:
    """One image's raw outputs, in the artifact's tag-index order."""

    probabilities: np.ndarray  # (T,) float32: per tag (detection: its best box, 0 without one)
    boxes: list[tuple[int, float, float, float, float, float]]  # detection only, after NMS
    embedding: np.ndarray  # (D,) float32 pooled backbone features
    # Detection run with `mirror=True`: the boxes found in the horizontally flipped image, in
    # its coordinates (training.ml.uncertainty.flip_disagreement un-flips them). None: not run.
    mirrored_boxes: list[tuple[int, float, float, float, float, float]] | None = None


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


class ModelCache:
    """LRU of LoadedModel by (iteration id, artifact name); thread-safe."""

    def __init__(self, capacity: int, *, threads: int | None = None, device: str = "cpu") -> None:
        self.capacity = max(1, capacity)
        self.threads = threads  # per forward pass (settings.LOUPE_PREDICTION_THREADS)
        self.device = device  # settings.LOUPE_DEVICE
        self._models: OrderedDict[CacheKey, LoadedModel] = OrderedDict()
        self._loading: dict[CacheKey, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was built (tests check "once per process")

    def get(self, key: CacheKey, read: Callable[[], bytes]) -> LoadedModel:
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                model = self._models.get(key)
            if model is not None:  # another thread loaded it while we waited
                return model
            model = LoadedModel(read(), threads=self.threads, device=self.device)
            with self._lock:
                self.loads += 1
                self._models[key] = model
                self._models.move_to_end(key)
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
                self._loading.pop(key, None)
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._loading.clear()


_cache: ModelCache | None = None
_cache_lock = threading.Lock()


def model_cache() -> ModelCache:
    """The process-wide cache, sized by settings.LOUPE_PREDICTION_MODELS_CACHED and
    LOUPE_PREDICTION_THREADS, its models on settings.LOUPE_DEVICE."""
    global _cache
    with _cache_lock:
        if _cache is None:
            from django.conf import settings

            _cache = ModelCache(
                settings.LOUPE_PREDICTION_MODELS_CACHED,
                threads=settings.LOUPE_PREDICTION_THREADS,
                device=settings.LOUPE_DEVICE,
            )
        return _cache
