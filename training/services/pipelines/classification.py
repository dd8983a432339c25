"""Classification (multiclass and multilabel): image tags in, a classifier and its scores out."""

from __future__ import annotations

from typing import Any, ClassVar

from labeling.models import Project
from training.models import Iteration, IterationImage
from training.services.classification_checks import (
    check_classification_trainable,
    take_classification_snapshot,
)
from training.services.performance import figures_at, load_scores, mispredicted_rows
from training.services.pipelines.base import TrainingChoices, TrainingPipeline
from training.services.progress import ProgressReporter
from training.services.snapshot import Snapshot


class ClassificationPipeline(TrainingPipeline):
    kind: ClassVar[str] = "classification"
    more_time_hint: ClassVar[str] = "Give it more time, or use quick training."

    def take_snapshot(self, project: Project) -> Snapshot:
        return take_classification_snapshot(project)

    def check_trainable(self, snapshot: Snapshot) -> None:
        check_classification_trainable(snapshot)

    def quick_budget_s(self) -> int:
        return 0  # embedding and a linear head: it runs to the end, minutes at most

    def choices(self) -> TrainingChoices:
        return TrainingChoices(
            quick="Quick: a new head on the pretrained backbone, minutes at most",
            advanced="Advanced: fine-tune the backbone within a time budget",
            quick_budget_note="Quick training has no budget of its own; choose Advanced to "
            "set one.",
        )

    def train(
        self,
        iteration: Iteration,
        images: list[IterationImage],
        report: ProgressReporter,
        started: float,
    ) -> None:
        # Imported here: torch, which the web process (snapshots, figures) never loads.
        from training.services.classification_training import train_classification

        train_classification(iteration, images, report, started)

    def threshold_figures(self, iteration: Iteration, threshold: float) -> dict[str, Any]:
        return figures_at(iteration, load_scores(iteration), threshold)

    def mispredicted_image_ids(
        self, iteration: Iteration, threshold: float, overlap: float
    ) -> list[int]:
        table = load_scores(iteration)
        wrong = mispredicted_rows(table, threshold, multiclass=not iteration.is_multilabel)
        return [
            row["id"]
            for row, bad in zip(table.rows, wrong.tolist(), strict=True)
            if bad and row["id"]
        ]
