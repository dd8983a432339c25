"""The end of every training, whatever the project's kind: the artifact written through storage,
the scores replaced and the row marked completed, if this attempt still holds it.

Also the two things every kind's training starts from: ImageRefs that open the snapshot's images
through storage, and the (N, T) label matrix. Imported by the worker only (torch).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from django.core.files.storage import Storage, default_storage
from django.db import transaction
from django.utils import timezone

from project.storage import replace_file
from training.ml.artifact import ClassifierArtifact, save_artifact
from training.ml.data import ImageRef
from training.ml.detection import DetectorArtifact, save_detector_artifact
from training.ml.errors import DatasetCorrupt
from training.models import Iteration, IterationImage, IterationScore, artifact_path
from training.services.progress import push_iteration_state

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a classification training returns before its scores are turned into metrics."""

    artifact: ClassifierArtifact
    scored_index: np.ndarray  # (M,) rows of the snapshot that were scored
    scores: np.ndarray  # (M, T) out-of-fold or held-out probabilities
    folds: np.ndarray  # (M,) fold per scored row, -1 for a hold-out row
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # (N, D) backbone features of the training images in snapshot order, when training has them
    # in the space predictions are embedded in (quick training): kept for "Most gain".
    features: np.ndarray | None = None


def _opener(storage: Storage, image: IterationImage) -> Callable[[], IO[bytes]]:
    def open_image() -> IO[bytes]:
        try:
            return storage.open(image.file_name, "rb")
        except OSError as err:  # a file deleted or lost from storage is a corrupt dataset
            raise DatasetCorrupt(
                f"Image {image.sha256} is missing from storage: {err}",
                item_key=image.sha256,
                problem="its file is missing from storage",
            ) from err

    return open_image


def build_refs(images: list[IterationImage]) -> list[ImageRef]:
    """ImageRefs that open each snapshot image through Django storage (local disk or S3)."""
    return [ImageRef(key=image.sha256, open=_opener(default_storage, image)) for image in images]


def build_targets(images: list[IterationImage], tag_count: int) -> np.ndarray:
    """(N, T) float32 {0,1}; a Negative image is all zeros (the background, or "none of these")."""
    targets = np.zeros((len(images), tag_count), dtype=np.float32)
    for row, image in enumerate(images):
        for index in image.labels:
            targets[row, index] = 1.0
    return targets


def complete_iteration(
    iteration: Iteration,
    *,
    metrics: dict[str, Any],
    artifact_name: str,
    timings: dict[str, float],
    scores: list[IterationScore],
) -> None:
    """Store the scores and mark the iteration completed, if this attempt still holds it."""
    with transaction.atomic():
        held = (
            Iteration.objects.select_for_update()
            .filter(pk=iteration.pk, status=Iteration.Status.TRAINING, attempts=iteration.attempts)
            .first()
        )
        if held is None:  # the sweep gave this attempt up meanwhile; its verdict stands
            logger.warning("Iteration %s finished after losing its lease", iteration.pk)
            return
        IterationScore.objects.filter(iteration=iteration).delete()
        IterationScore.objects.bulk_create(scores, batch_size=500)
        held.status = Iteration.Status.COMPLETED
        held.metrics = metrics
        held.artifact.name = artifact_name
        held.timings = {key: round(value, 3) for key, value in timings.items()}
        held.finished = timezone.now()
        held.progress_fraction = 1.0
        held.progress_phase = "done"
        held.lease_expires = None
        held.save(
            update_fields=[
                "status",
                "metrics",
                "artifact",
                "timings",
                "finished",
                "progress_fraction",
                "progress_phase",
                "lease_expires",
            ]
        )
    push_iteration_state(held)


def save_artifact_file(
    iteration: Iteration, artifact: ClassifierArtifact | DetectorArtifact
) -> str:
    """Write the artifact to `iterations/<id>/model.pt` through storage, via a temporary name.

    Written whole in place (project.storage.replace_file): a killed worker never leaves half a
    model under the name.
    """
    name = artifact_path(iteration, "model.pt")
    with tempfile.TemporaryFile() as buffer:
        if isinstance(artifact, DetectorArtifact):
            save_detector_artifact(artifact, buffer)
        else:
            save_artifact(artifact, buffer)
        buffer.seek(0)
        replace_file(name, buffer.read())
    _write_serving_file(name, artifact)
    return name


def _write_serving_file(name: str, artifact: ClassifierArtifact | DetectorArtifact) -> None:
    """The web process's ONNX model (training.services.serving). A failure does not fail the
    training: predictions then run the torch model and a worker is asked again."""
    from training.services.serving import write_serving_file

    try:
        write_serving_file(name, artifact)
    except Exception:
        logger.exception("Could not write the serving file of %s", name)
