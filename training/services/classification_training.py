"""Training a classification iteration in a worker: quick (frozen features + a linear head,
k-fold scores) or advanced (fine-tuning, held-out scores), then metrics and the shared finish.

Imported by the classification pipeline's `train` step only: it pulls in torch.
"""

from __future__ import annotations

import time

import numpy as np
from django.conf import settings

from training.ml.artifact import ClassifierArtifact
from training.ml.data import ImageRef
from training.ml.features import FeatureCache, embed_images
from training.ml.metrics import classification_metrics
from training.ml.preprocessing import PREPROCESSING_VERSION
from training.ml.quick import train_quick
from training.models import Iteration, IterationImage, IterationScore
from training.services.advanced import train_advanced
from training.services.embeddings import save_training_embeddings
from training.services.finish import (
    Outcome,
    build_refs,
    build_targets,
    complete_iteration,
    save_artifact_file,
)
from training.services.progress import ProgressReporter

# Scores are kept to 6 decimals: the slider moves in 0.01 steps, and the page embeds them all.
SCORE_DECIMALS = 6


def train_classification(
    iteration: Iteration,
    images: list[IterationImage],
    report: ProgressReporter,
    started: float,
) -> None:
    """Train, score, store: the iteration ends completed (or raises a named MLError)."""
    tag_names = list(iteration.tags.order_by("index").values_list("name", flat=True))
    refs = build_refs(images)
    targets = build_targets(images, len(tag_names))
    if iteration.training_type == Iteration.TrainingType.ADVANCED:
        outcome = train_advanced(iteration, refs, targets, tag_names, report)
    else:
        outcome = _train_quick(iteration, refs, targets, tag_names, report)
    report("saving", 0.97, force=True)
    _finish(iteration, images, outcome, started)


def _train_quick(
    iteration: Iteration,
    refs: list[ImageRef],
    targets: np.ndarray,
    tag_names: list[str],
    report: ProgressReporter,
) -> Outcome:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    features = embed_images(
        refs,
        backbone=iteration.backbone,
        cache=FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR),
        on_progress=lambda done, total: report(
            f"embedding {done}/{total}", 0.6 * done / max(total, 1)
        ),
        device=settings.LOUPE_DEVICE,
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
