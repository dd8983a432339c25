"""Training one claimed detection iteration in a worker: boxes in; detector, held-out detections
and mAP out.

Called by `training.services.runner.train_iteration`, which maps every failure (DatasetCorrupt,
TrainingDiverged, BudgetExhausted, DatasetTooSmall, anything unexpected) to the row's failure
reason, exactly as for classification. Outputs are idempotent like classification's: the
artifact is written to `iterations/<id>/model.pt` through a temporary name, and the held-out
rows are replaced, never appended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from django.conf import settings

from training.ml.detection import DetectorConfig, DetectorResult, TrainOptions, train_detector
from training.ml.detection.prepare import MapStore
from training.ml.detection_metrics import Detection, GroundTruthBox
from training.models import Iteration, IterationImage, IterationScore
from training.services.detection_performance import DEFAULT_OVERLAP, detection_figures
from training.services.finish import build_refs, complete_iteration, save_artifact_file
from training.services.progress import ProgressReporter

# Stored detections are rounded: probabilities to 1e-6 (the slider moves in 0.01 steps) and
# coordinates to 1e-5 of the image (0.04 px of a 4,000 px photograph). The stored metrics are
# computed from the rounded numbers, so the page's figures and the stored ones agree exactly.
PROBABILITY_DECIMALS = 6
COORDINATE_DECIMALS = 5


def detector_config() -> DetectorConfig:
    """The default detector, at LOUPE_DETECTION_IMAGE_SIZE_PX (longer side capped in proportion)."""
    default = DetectorConfig()
    size = int(settings.LOUPE_DETECTION_IMAGE_SIZE_PX)
    if size == default.image_size_px:
        return default
    ratio = default.max_size_px / default.image_size_px
    return replace(default, image_size_px=size, max_size_px=round(size * ratio))


def train_detection(
    iteration: Iteration, images: list[IterationImage], report: ProgressReporter, started: float
) -> None:
    """Train the detector within the iteration's budget, then store artifact, scores, metrics."""
    tag_names = list(iteration.tags.order_by("index").values_list("name", flat=True))
    boxes = [_ground_truth(image) for image in images]
    t0 = time.monotonic()
    config = detector_config()
    options = TrainOptions(max_epochs=int(settings.LOUPE_DETECTION_MAX_EPOCHS))
    result = train_detector(
        build_refs(images),
        boxes,
        num_tags=len(tag_names),
        backbone=iteration.backbone,
        budget_s=float(iteration.budget_s),
        seed=0,
        on_progress=_progress(report),
        config=config,
        options=options,
        map_store=MapStore(
            settings.LOUPE_DETECTION_MAP_CACHE_DIR,
            backbone=iteration.backbone,
            config=config,
            max_bytes=int(settings.LOUPE_DETECTION_MAP_CACHE_MB) * 1024**2,
        ),
        device=settings.LOUPE_DEVICE,
    )
    timings = {"training_s": time.monotonic() - t0, **result.timings}
    report("saving", 0.97, force=True)
    t0 = time.monotonic()
    held = [int(i) for i in result.holdout_index]
    detections = [_rounded(found) for found in result.holdout_detections]
    metrics = _metrics(iteration, result, boxes, held, detections, tag_names)
    metrics.update(_epochs_summary(result, max_epochs=options.max_epochs))
    timings["metrics_s"] = time.monotonic() - t0
    artifact = result.to_artifact(backbone=iteration.backbone, num_tags=len(tag_names))
    name = save_artifact_file(iteration, artifact)
    timings["total_s"] = time.monotonic() - started
    rows = [
        IterationScore(
            iteration=iteration,
            iteration_image=images[index],
            fold=-1,
            scores=_best_per_tag(found, len(tag_names)),
            detections=[list(d) for d in found],
        )
        for index, found in zip(held, detections, strict=True)
    ]
    complete_iteration(iteration, metrics=metrics, artifact_name=name, timings=timings, scores=rows)


def _metrics(
    iteration: Iteration,
    result: DetectorResult,
    boxes: list[list[GroundTruthBox]],
    held: list[int],
    detections: list[list[Detection]],
    tag_names: list[str],
) -> dict[str, Any]:
    """Iteration.metrics: the held-out figures at the default thresholds, box counts, epochs."""
    metrics = detection_figures(
        [boxes[i] for i in held],
        detections,
        tag_names=tag_names,
        probability_threshold=iteration.suggested_threshold,
        overlap_threshold=DEFAULT_OVERLAP,
    )
    _add_box_counts(metrics, boxes)
    metrics.update(
        image_count=len(boxes),
        holdout_count=len(held),
        epochs=int(result.epochs),
        steps=int(result.steps),
        final_loss=float(result.epoch_losses[-1]) if result.epoch_losses else None,
        # Fewer than training_images when preparation was cut off by its deadline.
        trained_images=int(result.trained_images),
        training_images=int(result.training_images),
    )
    return metrics


def _epochs_summary(result: DetectorResult, *, max_epochs: int) -> dict[str, Any]:
    """The page's epoch summary: the detector kept is the last epoch's (the held-out split is
    scored once, so no epoch is picked by it), and the only per-epoch figure is the training
    loss. `still_improving`: the budget, not the epoch cap, ended training while that loss was
    still at its lowest, so a larger budget would likely help."""
    losses = [round(float(loss), 4) for loss in result.epoch_losses]
    return {
        "best_epoch": int(result.best_epoch),
        "epoch_losses": losses,
        "still_improving": bool(
            result.epochs < max_epochs and len(losses) >= 2 and losses[-1] <= min(losses)
        ),
    }


def _ground_truth(image: IterationImage) -> list[GroundTruthBox]:
    return [
        (int(tag), float(left), float(top), float(width), float(height))
        for tag, left, top, width, height in image.boxes
    ]


def _rounded(found: Sequence[Detection]) -> list[Detection]:
    p, c = PROBABILITY_DECIMALS, COORDINATE_DECIMALS
    return [
        (int(tag), round(prob, p), round(left, c), round(top, c), round(width, c), round(height, c))
        for tag, prob, left, top, width, height in found
    ]


def _best_per_tag(found: Sequence[Detection], tag_count: int) -> list[float]:
    """Each tag's highest box probability in the image (0 without one), in tag-index order."""
    best = np.zeros(tag_count)
    for detection in found:
        best[detection[0]] = max(best[detection[0]], detection[1])
    return [float(value) for value in best]


def _add_box_counts(metrics: dict[str, Any], boxes: list[list[GroundTruthBox]]) -> None:
    per_tag = metrics["per_tag"]
    counts = np.zeros(len(per_tag), dtype=np.int64)
    for image_boxes in boxes:
        for box in image_boxes:
            counts[box[0]] += 1
    for row, count in zip(per_tag, counts.tolist(), strict=True):
        row["boxes"] = count


def _progress(report: ProgressReporter) -> Callable[[str, float], None]:
    """train_detector's phases on the iteration's progress bar (throttled by the reporter):
    preparing the images (backbone views) 0-20%, epochs 20-90%, scoring the held-out split."""

    def on_progress(phase: str, fraction: float) -> None:
        if phase.startswith("epoch"):
            report(f"training, {phase}", 0.2 + 0.7 * fraction)
        elif phase == "preparing":
            report(f"preparing the images {round(100 * fraction)}%", 0.2 * fraction)
        elif phase == "evaluating":
            report("scoring the held-out images", 0.9, force=True)

    return on_progress
