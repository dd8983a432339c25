"""Published models, loaded once per process and shared by every request thread.

Invariant: a cache entry is keyed by (iteration id, artifact file name), never by publish name.
Publishing another iteration under a name therefore needs no invalidation: the next request
resolves the name to the new iteration (one indexed query per request, see
services/predict.py) and loads that model, while requests already running finish on the model
they hold. Nothing is dropped: an entry leaves the cache only as least recently used, and a
request that still holds the evicted model keeps it alive until it returns.

Loading is serialised per key (two first requests load the model once; the other waits, at
most `load_wait_s`, then gets ModelLoading: a 503 with Retry-After, not a request held for as
long as a cold load takes on a busy server), and the cache's own lock is held only for
dictionary work, so loading one model never blocks predictions on another.
A worker killed mid-load leaves nothing behind: the cache is memory.

What is cached is a training.ml.serving.ServingModel (ONNX Runtime, no torch in this process)
read from the iteration's serving file, which the worker writes when training completes. An
iteration trained before serving files existed has none: its first load asks a worker to write
it (training.build_serving_model) and predicts meanwhile with the torch model it always used
(training.ml.torch_model, the same results), so no request waits or fails; that provisional
entry is dropped LEGACY_RECHECK_S later, and the next load finds the serving file.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from PIL import Image

from project.errors import LoupeError
from training.ml.serving import ModelOutput

CacheKey = tuple[int, str]
# How long a request waits for another request's load of the same model. A cold load (a
# Lite2 model on a busy 2-core server) takes 10-20 s; past this the client is told to retry.
LOAD_WAIT_S = 30.0
RETRY_AFTER_S = 5


class ModelLoading(LoupeError):
    """Another request is still loading this model: retry after `retry_after_s` seconds."""

    code = "model_loading"
    http_status = 503


LEGACY_RECHECK_S = 30.0

__all__ = ["ModelOutput"]  # re-exported: callers and tests build outputs from here


class Model(Protocol):
    is_detector: bool
    backbone: str
    input_size: int
    tag_count: int

    def run(self, image: Image.Image, *, mirror: bool = False) -> ModelOutput: ...


def __getattr__(name: str) -> Any:
    # The torch model stays importable from here (benches compare against it) without this
    # module importing torch.
    if name == "LoadedModel":
        from training.ml.torch_model import LoadedModel

        return LoadedModel
    raise AttributeError(name)


class ModelCache:
    """LRU of models by (iteration id, artifact name); thread-safe."""

    def __init__(
        self,
        capacity: int,
        *,
        threads: int | None = None,
        device: str = "cpu",
        load_wait_s: float = LOAD_WAIT_S,
    ) -> None:
        self.capacity = max(1, capacity)
        self.load_wait_s = load_wait_s
        self.threads = threads  # per forward pass (settings.LOUPE_PREDICTION_THREADS)
        self.device = device  # settings.LOUPE_DEVICE
        self._models: OrderedDict[CacheKey, Model] = OrderedDict()
        # Provisional (torch) entries and when they stop being served from the cache.
        self._expires: dict[CacheKey, float] = {}
        self._loading: dict[CacheKey, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was built (tests check "once per process")

    def get(self, key: CacheKey, load: Callable[[], tuple[Model, bool]]) -> Model:
        """The cached model of `key`, else `load()`'s: (model, provisional). A provisional
        model is served for LEGACY_RECHECK_S, then loaded again."""
        with self._lock:
            model = self._fresh(key)
            if model is not None:
                return model
            key_lock = self._loading.setdefault(key, threading.Lock())
        if not key_lock.acquire(timeout=self.load_wait_s):
            raise ModelLoading(
                "This model is still being loaded for an earlier request (the first prediction "
                f"after publishing loads it); try again in {RETRY_AFTER_S} seconds.",
                retry_after_s=RETRY_AFTER_S,
            )
        try:
            with self._lock:
                model = self._fresh(key)
            if model is not None:  # another thread loaded it while we waited
                return model
            model, provisional = load()
            with self._lock:
                self.loads += 1
                self._models[key] = model
                self._models.move_to_end(key)
                if provisional:
                    self._expires[key] = time.monotonic() + LEGACY_RECHECK_S
                else:
                    self._expires.pop(key, None)
                while len(self._models) > self.capacity:
                    evicted, _ = self._models.popitem(last=False)
                    self._expires.pop(evicted, None)
                self._loading.pop(key, None)
            return model
        finally:
            key_lock.release()

    def _fresh(self, key: CacheKey) -> Model | None:
        """The entry of `key` unless absent or a provisional one past its time (lock held)."""
        model = self._models.get(key)
        if model is None:
            return None
        if time.monotonic() > self._expires.get(key, float("inf")):
            del self._models[key]
            del self._expires[key]
            return None
        self._models.move_to_end(key)
        return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._expires.clear()
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
