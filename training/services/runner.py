"""Training one claimed iteration in a worker: snapshot in, artifact, metrics and scores out.

Imported by the Celery task only: it pulls in torch, which the web process never needs.
Every way training can end is recorded on the row: completed with metrics, or failed with a
`failure_reason` code and a message for the user. Outputs are idempotent: the artifact goes to
`iterations/<id>/model.pt` through a temporary name, and scores are replaced, never appended.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files import File
from django.core.files.storage import Storage, default_storage
from django.db import transaction
from django.utils import timezone

from training.ml.artifact import ClassifierArtifact, save_artifact
from training.ml.data import ImageRef
from training.ml.detection import DetectorArtifact, save_detector_artifact
from training.ml.errors import BudgetExhausted, DatasetCorrupt, DatasetTooSmall, TrainingDiverged
from training.ml.metrics import classification_metrics
from training.ml.preprocessing import PREPROCESSING_VERSION
from training.models import Iteration, IterationImage, IterationScore, artifact_path
from training.services.embeddings import save_training_embeddings
from training.services.iterations import fail_iteration
from training.services.progress import (
    IterationReleased,
    ProgressReporter,
    lease_heartbeat,
    push_iteration_state,
)

logger = logging.getLogger(__name__)

# Scores are kept to 6 decimals: the slider moves in 0.01 steps, and the page embeds them all.
SCORE_DECIMALS = 6


@dataclass
class Outcome:
    artifact: ClassifierArtifact
    scored_index: np.ndarray  # (M,) rows of the snapshot that were scored
    scores: np.ndarray  # (M, T) out-of-fold or held-out probabilities
    folds: np.ndarray  # (M,) fold per scored row, -1 for a hold-out row
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # (N, D) backbone features of the training images in snapshot order, when training has them
    # in the space predictions are embedded in (quick training): kept for "Most gain".
    features: np.ndarray | None = None


def train_iteration(iteration: Iteration) -> None:
    """Train a claimed iteration to completed or failed; never leaves it "training"."""
    images = list(iteration.images.order_by("id"))
    report = ProgressReporter(iteration)
    started = time.monotonic()
    try:
        with lease_heartbeat(iteration):
            if iteration.project.is_detection:
                from training.services.detection import train_detection

                train_detection(iteration, images, report, started)
            else:
                outcome = _train(iteration, images, report)
                report("saving", 0.97, force=True)
                _finish(iteration, images, outcome, started)
    except DatasetCorrupt as err:
        name = _name_of(images, getattr(err, "item_key", ""))
        fail_iteration(
            iteration,
            reason=Iteration.FailureReason.DATASET_CORRUPT,
            message=f"The image “{name}” could not be read ({err}). Delete or "
            "re-upload it, then train again.",
        )
    except TrainingDiverged as err:
        fail_iteration(
            iteration,
            reason=Iteration.FailureReason.TRAINING_DIVERGED,
            message=f"Training diverged: the loss became NaN or infinite ({err}). "
            "Check the images for extreme or broken pixel values.",
        )
    except BudgetExhausted as err:
        budget = (
            f"{iteration.budget_s} seconds"
            if iteration.budget_s < 120
            else f"{iteration.budget_s / 60:g} minutes"
        )
        fail_iteration(
            iteration,
            reason=Iteration.FailureReason.BUDGET_NOT_ENOUGH,
            message=f"The budget of {budget} ran out before one useful epoch "
            f"({err}) {_more_time_hint(iteration)}",
        )
    except DatasetTooSmall as err:
        # check_trainable refuses most of these before a worker is involved; what is left (a
        # held-out split without boxes) is the data's fault, not a bug: no traceback.
        fail_iteration(iteration, reason=Iteration.FailureReason.UNEXPECTED, message=err.message)
    except IterationReleased:
        # Cancelled by an admin, or given up by the sweep: the row's verdict stands.
        logger.info("Iteration %s released by this attempt; training stopped", iteration.pk)
    except SoftTimeLimitExceeded:
        fail_iteration(
            iteration,
            reason=Iteration.FailureReason.UNEXPECTED,
            message="Training went over its time limit and was stopped.",
        )
    except Exception as err:
        # Anything else is a bug or an environment problem: keep the traceback in the log and
        # tell the user what happened instead of leaving the row "training".
        logger.exception("Iteration %s failed unexpectedly", iteration.pk)
        fail_iteration(
            iteration,
            reason=Iteration.FailureReason.UNEXPECTED,
            message=f"Training stopped on an unexpected error: {type(err).__name__}: {err}",
        )


def _more_time_hint(iteration: Iteration) -> str:
    if iteration.project.is_detection:
        return "Give it a larger budget with advanced training, or train on fewer images."
    return "Give it more time, or use quick training."


def _name_of(images: list[IterationImage], key: str) -> str:
    for image in images:
        if image.sha256 == key:
            return image.original_name or image.file_name
    return key or "unknown"


def _opener(storage: Storage, image: IterationImage) -> Callable[[], IO[bytes]]:
    def open_image() -> IO[bytes]:
        try:
            return storage.open(image.file_name, "rb")
        except OSError as err:  # a file deleted or lost from storage is a corrupt dataset
            raise DatasetCorrupt(f"its file is missing: {err}", item_key=image.sha256) from err

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


def _train(iteration: Iteration, images: list[IterationImage], report: ProgressReporter) -> Outcome:
    tag_names = list(iteration.tags.order_by("index").values_list("name", flat=True))
    refs = build_refs(images)
    targets = build_targets(images, len(tag_names))
    if iteration.training_type == Iteration.TrainingType.ADVANCED:
        from training.services.advanced import train_advanced

        return train_advanced(iteration, refs, targets, tag_names, report)
    return _train_quick(iteration, refs, targets, tag_names, report)


def _train_quick(
    iteration: Iteration,
    refs: list[ImageRef],
    targets: np.ndarray,
    tag_names: list[str],
    report: ProgressReporter,
) -> Outcome:
    from django.conf import settings

    from training.ml.features import FeatureCache, embed_images
    from training.ml.quick import train_quick

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    cache = FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR)
    features = embed_images(
        refs,
        backbone=iteration.backbone,
        cache=cache,
        on_progress=lambda done, total: report(
            f"embedding {done}/{total}", 0.6 * done / max(total, 1)
        ),
    )
    timings["embedding_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    result = train_quick(
        features,
        targets,
        multilabel=iteration.is_multilabel,
        seed=0,
        on_progress=lambda phase, fraction: report(phase, 0.6 + 0.35 * fraction),
    )
    timings["training_s"] = time.monotonic() - t0
    artifact = ClassifierArtifact.from_quick(
        result.head,
        backbone=iteration.backbone,
        tag_keys=tag_names,
        preprocessing_version=PREPROCESSING_VERSION,
    )
    return Outcome(
        artifact=artifact,
        scored_index=np.arange(len(refs)),
        scores=np.asarray(result.oof_scores, dtype=np.float64),
        folds=np.asarray(result.fold_of),
        timings=timings,
        extra={"epochs": int(result.epochs), "final_loss": float(result.final_loss)},
        features=features,
    )


def _finish(
    iteration: Iteration, images: list[IterationImage], outcome: Outcome, started: float
) -> None:
    t0 = time.monotonic()
    scores = np.round(outcome.scores, SCORE_DECIMALS)
    tag_count = scores.shape[1]
    y_true = build_targets(images, tag_count)[outcome.scored_index]
    metrics = classification_metrics(
        y_true, scores, threshold=0.5, multiclass=not iteration.is_multilabel
    )
    metrics.update(outcome.extra, image_count=len(images), scored_count=len(outcome.scored_index))
    outcome.timings["metrics_s"] = time.monotonic() - t0
    name = save_artifact_file(iteration, outcome.artifact)
    if outcome.features is not None:
        save_training_embeddings(iteration.pk, outcome.features)
    outcome.timings["total_s"] = time.monotonic() - started
    rows = [
        IterationScore(
            iteration=iteration,
            iteration_image=images[row],
            fold=int(fold),
            scores=[float(s) for s in scores[i]],
        )
        for i, (row, fold) in enumerate(zip(outcome.scored_index, outcome.folds, strict=True))
    ]
    complete_iteration(
        iteration, metrics=metrics, artifact_name=name, timings=outcome.timings, scores=rows
    )


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

    On local disk the final name appears by `os.replace`, so a killed worker never leaves half a
    model under it; on object storage a single PUT is atomic already.
    """
    storage = default_storage
    name = artifact_path(iteration, "model.pt")
    tmp_name = f"{name}.tmp"
    with tempfile.TemporaryFile() as buffer:
        if isinstance(artifact, DetectorArtifact):
            save_detector_artifact(artifact, buffer)
        else:
            save_artifact(artifact, buffer)
        buffer.seek(0)
        for stale in (tmp_name, name):
            if storage.exists(stale):
                storage.delete(stale)
        saved = storage.save(tmp_name, File(buffer, name=os.path.basename(tmp_name)))
        try:
            os.replace(storage.path(saved), storage.path(name))
        except NotImplementedError:  # remote storage: no local path, write the final name
            buffer.seek(0)
            storage.save(name, File(buffer, name=os.path.basename(name)))
            storage.delete(saved)
    return name
