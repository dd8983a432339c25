"""Object detection: boxes in, a detector and its held-out detections out.

A detector always trains against the clock (there are no cached features to fit a head on in
seconds): quick detection training has a fixed budget (LOUPE_DETECTION_QUICK_BUDGET_S), advanced
the same recipe within the user's budget.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from django.conf import settings

from labeling.models import Project
from training.models import Iteration, IterationImage
from training.services.detection_checks import check_detection_trainable, take_detection_snapshot
from training.services.detection_performance import (
    detection_figures_at,
    detection_mispredicted_rows,
    load_detection_table,
)
from training.services.pipelines.base import BudgetEstimate, TrainingChoices, TrainingPipeline
from training.services.progress import ProgressReporter
from training.services.snapshot import Snapshot

# Seconds to prepare one training image (decode + one backbone pass) when no training on this
# installation has measured it yet: lite0 at 320 px in ONNX Runtime on a 2-core CPU with the
# other core busy (bench/detection_training.py).
DEFAULT_PREPARE_PER_IMAGE_S = 0.25
# Preparation may use this share of the budget before training starts on what is ready
# (TrainOptions.max_prepare_share).
PREPARE_SHARE = 0.6
HOLDOUT_SHARE = 0.2
# Scoring a held-out image costs about this many times preparing one (the whole detector, its
# post-processing, the reserve's margin).
SCORING_COST_RATIO = 1.5


class DetectionPipeline(TrainingPipeline):
    kind: ClassVar[str] = "detection"
    more_time_hint: ClassVar[str] = (
        "Give it a larger budget with advanced training, or train on fewer images."
    )

    def take_snapshot(self, project: Project) -> Snapshot:
        return take_detection_snapshot(project)

    def check_trainable(self, snapshot: Snapshot) -> None:
        check_detection_trainable(snapshot)

    def quick_budget_s(self) -> int:
        return int(settings.LOUPE_DETECTION_QUICK_BUDGET_S)

    def choices(self) -> TrainingChoices:
        minutes = f"{self.quick_budget_s() / 60:g}"
        return TrainingChoices(
            quick=f"Quick: train a detector on the frozen pretrained backbone for {minutes} "
            "minutes",
            advanced="Advanced: the same detector training within a time budget you choose",
            quick_budget_note=f"Quick detection training always takes its fixed budget of "
            f"{minutes} minutes; choose Advanced to set another.",
        )

    def estimate(self, project: Project, budget_s: int) -> BudgetEstimate | None:
        return self.estimate_for(len(self.take_snapshot(project).images), budget_s)

    def estimate_for(self, image_count: int, budget_s: int) -> BudgetEstimate | None:
        """Preparing the images before training starts, from the last measured cost per image."""
        if image_count <= 0 or budget_s <= 0:
            return None
        per_image = measured_prepare_per_image_s() or DEFAULT_PREPARE_PER_IMAGE_S
        train_count = image_count * (1 - HOLDOUT_SHARE)
        scoring_s = image_count * HOLDOUT_SHARE * per_image * SCORING_COST_RATIO
        preparing_s = train_count * per_image
        # Preparing, one pass of training (a fraction of preparing: FPN and head only), scoring.
        needed_s = preparing_s * 1.2 + scoring_s
        enough = preparing_s <= PREPARE_SHARE * (budget_s - scoring_s)
        minutes = _minutes(needed_s)
        minutes_of_budget = max(1, round(budget_s / 60))
        budget = f"{minutes_of_budget}-minute"
        if enough:
            message = (
                f"About {minutes} to prepare {image_count} images and score the held-out "
                f"ones; the rest of the {budget} budget trains the detector."
            )
        else:
            ready = min(
                round(train_count), max(0, int(PREPARE_SHARE * (budget_s - scoring_s) / per_image))
            )
            wanted_s = math.ceil((preparing_s / PREPARE_SHARE + scoring_s) / 60) * 60
            message = (
                f"About {minutes} to prepare {image_count} images: the {budget} budget is not "
                f"enough to prepare them all, so training starts on about {ready} of "
                f"them. Advanced training with about {_minutes(wanted_s)} uses them all."
            )
        return BudgetEstimate(
            image_count=image_count,
            needed_s=needed_s,
            budget_s=budget_s,
            enough=enough,
            message=message,
        )

    def train(
        self,
        iteration: Iteration,
        images: list[IterationImage],
        report: ProgressReporter,
        started: float,
    ) -> None:
        # Imported here: torch, which the web process (snapshots, figures) never loads.
        from training.services.detection import train_detection

        train_detection(iteration, images, report, started)

    def threshold_figures(self, iteration: Iteration, threshold: float) -> dict[str, Any]:
        return detection_figures_at(iteration, load_detection_table(iteration), threshold)

    def mispredicted_image_ids(
        self, iteration: Iteration, threshold: float, overlap: float
    ) -> list[int]:
        table = load_detection_table(iteration)
        wrong = detection_mispredicted_rows(table, threshold, overlap)
        return [row["id"] for row, bad in zip(table.rows, wrong, strict=True) if bad and row["id"]]


def measured_prepare_per_image_s() -> float | None:
    """The preparation cost per image the latest detection trainings measured, if any."""
    recent = (
        Iteration.objects.filter(
            status=Iteration.Status.COMPLETED, project__kind=Project.Kind.DETECTION
        )
        .order_by("-finished")
        .values_list("timings", flat=True)[:5]
    )
    for timings in recent:
        value = (timings or {}).get("prepare_per_image_s")
        if value:
            return float(value)
    return None


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
