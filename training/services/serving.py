"""Serving files (training.ml.serving): written by the worker, read by the web process.

Written when a training completes (finish.save_artifact_file), so a new iteration is served
through ONNX Runtime from its first prediction. An iteration trained before serving files
existed gets one on first need: the web process enqueues TASK (predictions.services.serving)
and predicts with torch meanwhile. The task always ends: done, nothing to do, or failed with
the reason logged (the web process then keeps its torch fallback and asks again later).
Imported by the worker only (torch).
"""

from __future__ import annotations

import logging

from django.core.files.storage import default_storage

from project.storage import replace_file
from training.ml.artifact import ClassifierArtifact
from training.ml.detection import DetectorArtifact
from training.ml.export import load_model_artifact
from training.ml.serving import serving_name
from training.ml.serving_build import build_serving, build_stock_graph
from training.models import Iteration

logger = logging.getLogger(__name__)

TASK = "training.build_serving_model"
TIME_LIMIT_S = 600


def write_serving_file(artifact_name: str, artifact: ClassifierArtifact | DetectorArtifact) -> str:
    """Build and store the serving file of the artifact stored as `artifact_name` (and the
    backbone's shared stock graph the first time one needs it)."""
    payload, stock = build_serving(artifact)
    if stock is not None and not default_storage.exists(stock):
        _store(stock, build_stock_graph(artifact.backbone))
    name = serving_name(artifact_name)
    _store(name, payload)
    return name


def _store(name: str, payload: bytes) -> None:
    """Write `payload` under `name` whole in place: a killed worker never leaves half a file."""
    replace_file(name, payload)


def build_serving_model(iteration_id: int) -> str:
    """The task's body: "done", "gone" (no completed iteration with a model) or "failed"."""
    iteration = Iteration.objects.completed().exclude(artifact="").filter(pk=iteration_id).first()
    if iteration is None:
        return "gone"
    if default_storage.exists(serving_name(iteration.artifact.name)):
        return "done"  # a second request's message, or written at training's end
    try:
        with default_storage.open(iteration.artifact.name, "rb") as handle:
            artifact = load_model_artifact(handle.read())
        write_serving_file(iteration.artifact.name, artifact)
    except Exception:  # any failure ends the job; predictions keep the torch path
        logger.exception("Could not write the serving file of iteration %s", iteration_id)
        return "failed"
    return "done"
