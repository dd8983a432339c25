"""Which model the web process predicts with: the iteration's serving file, without torch.

`load_model` is the model cache's loader (predictions.model_cache). An iteration has a serving
file (training.ml.serving) from the end of its training; one trained before serving files
existed does not. For it the rule is: never make a user wait or retry. The first load asks a
worker to write the file (once per LEGACY_ENQUEUE_EVERY_S in this process) and predicts with
the torch model it always used, whose results are the same (tests/ml/test_serving.py); the
cache keeps that model only LEGACY_RECHECK_S, so the serving file is picked up soon after the
worker wrote it. With LOUPE_DEVICE=cuda the torch model runs on the GPU, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from project.queue import send
from training.ml.serving import ServingModel, serving_name

logger = logging.getLogger(__name__)

BUILD_TASK = "training.build_serving_model"  # training.services.serving.TASK
LEGACY_ENQUEUE_EVERY_S = 600.0

_asked: dict[int, float] = {}  # iteration id -> when this process last asked for its file
_asked_lock = threading.Lock()


def load_model(iteration_id: int, artifact_name: str) -> tuple[Any, bool]:
    """(model, provisional) for the iteration whose artifact is stored as `artifact_name`:
    the serving model, or the torch model while there is none."""
    threads = settings.LOUPE_PREDICTION_THREADS
    if settings.LOUPE_DEVICE != "cuda":
        name = serving_name(artifact_name)
        if default_storage.exists(name):
            try:
                with default_storage.open(name, "rb") as handle:
                    payload = handle.read()
                return ServingModel(payload, read=_read, threads=threads), False
            except Exception:  # damaged or unreadable: rewritten by the worker, torch meanwhile
                logger.exception("Serving file %s could not be loaded", name)
                default_storage.delete(name)
        _ask_for_serving_file(iteration_id)
    from training.ml.torch_model import LoadedModel  # torch: only for older iterations

    with default_storage.open(artifact_name, "rb") as handle:
        payload = handle.read()
    model = LoadedModel(payload, threads=threads, device=settings.LOUPE_DEVICE)
    return model, settings.LOUPE_DEVICE != "cuda"


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()  # type: ignore[no-any-return]


def _ask_for_serving_file(iteration_id: int) -> None:
    now = time.monotonic()
    with _asked_lock:
        if now - _asked.get(iteration_id, -LEGACY_ENQUEUE_EVERY_S) < LEGACY_ENQUEUE_EVERY_S:
            return
        _asked[iteration_id] = now
    send(BUILD_TASK, iteration_id, queue="predict")
