"""Object detection: boxes in, a detector and its held-out detections out.

A detector always trains against the clock (there are no cached features to fit a head on in
seconds): quick detection training has a fixed budget (LOUPE_DETECTION_QUICK_BUDGET_S), advanced
the same recipe within the user's budget.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings

from labeling.models import Project
from training.models import Iteration, IterationImage
from training.services.detection_checks import check_detection_trainable, take_detection_snapshot
from training.services.detection_performance import detection_figures_at, load_detection_table
from training.services.pipelines.base import TrainingChoices, TrainingPipeline
from training.services.progress import ProgressReporter
from training.services.snapshot import Snapshot


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
