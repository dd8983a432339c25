"""Stored predictions with crafted model outputs, made through the real scoring and storing
services (only the forward pass is skipped: the probabilities and embeddings are chosen)."""

from __future__ import annotations

import hashlib

import numpy as np

from labeling.models import Project
from predictions.model_cache import ModelOutput
from predictions.models import Prediction
from predictions.services.predict import CheckedImage, score_output, store_prediction, target_for
from tests.conftest import make_image
from training.models import Iteration

_counter = iter(range(1, 10**9))


def crafted_prediction(
    project: Project,
    iteration: Iteration,
    probabilities: list[float],
    embedding: np.ndarray | None = None,
) -> Prediction:
    n = next(_counter)
    data = make_image(16, 16, (n % 256, (n // 256) % 256, 7))
    checked = CheckedImage(data, hashlib.sha256(data).hexdigest(), "PNG", 16, 16)
    if embedding is None:
        embedding = np.random.default_rng(n).standard_normal(64).astype(np.float32)
    output = ModelOutput(np.asarray(probabilities, dtype=np.float32), [], embedding)
    target = target_for(project, iteration)
    return store_prediction(target=target, image=checked, outcome=score_output(target, output))
