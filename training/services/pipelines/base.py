"""What every kind of project's training is made of, chosen once per project (`pipeline_for`).

A pipeline is the one place that knows a kind's rules: which images and labels it snapshots,
what a trainable snapshot is, what quick training means for it (and so its budget and the Train
page's wording), how a claimed iteration trains, and how its figures are read back at a
threshold. The shared steps around it (the lease, failure reasons, writing the artifact and the
scores) are the runner's (training.services.runner, .failures, .finish).

This module and the pipelines load no torch: the web process takes snapshots and reads figures;
only `train` imports the ML core, on first use, in the worker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings

from labeling.models import Project
from project.errors import ValidationFailed
from training.models import Iteration, IterationImage
from training.services.progress import ProgressReporter
from training.services.snapshot import Snapshot


@dataclass(frozen=True)
class TrainingChoices:
    """What the Train page says about each training type of this kind, truthfully."""

    quick: str
    advanced: str
    quick_budget_note: str  # shown when Quick is chosen, next to the (then unused) budget


@dataclass(frozen=True)
class BudgetEstimate:
    """How long training `image_count` images is expected to take before it starts."""

    image_count: int
    needed_s: float  # preparing the images + one pass + scoring the held-out part
    budget_s: int
    enough: bool
    message: str


class TrainingPipeline(ABC):
    kind: ClassVar[str]
    # The failure message's advice when the budget ran out.
    more_time_hint: ClassVar[str]

    @abstractmethod
    def take_snapshot(self, project: Project) -> Snapshot:
        """The project's training images and their labels (or boxes) as training sees them."""

    @abstractmethod
    def check_trainable(self, snapshot: Snapshot) -> None:
        """Raise LabelRuleError when the snapshot cannot make a model, saying what to fix."""

    @abstractmethod
    def quick_budget_s(self) -> int:
        """Quick training's budget in seconds; 0 when it runs to the end without one."""

    @abstractmethod
    def choices(self) -> TrainingChoices:
        """The Train page's description of quick and advanced training for this kind."""

    @abstractmethod
    def train(
        self,
        iteration: Iteration,
        images: list[IterationImage],
        report: ProgressReporter,
        started: float,
    ) -> None:
        """Train a claimed iteration and store it completed; raises a named MLError else."""

    @abstractmethod
    def threshold_figures(self, iteration: Iteration, threshold: float) -> dict[str, Any]:
        """Overall and per-tag figures of a completed iteration at `threshold`."""

    @abstractmethod
    def mispredicted_image_ids(
        self, iteration: Iteration, threshold: float, overlap: float
    ) -> list[int]:
        """The images the iteration got wrong at the thresholds, in the performance page's
        order (`overlap` counts for detection only; images deleted since are left out)."""

    def estimate(self, project: Project, budget_s: int) -> BudgetEstimate | None:
        """Whether `budget_s` is expected to be enough for the project's training images; None
        when the kind's training does not race a budget in a way worth estimating."""
        return None

    def budget_for(self, training_type: str, budget_s: int) -> int:
        """The budget an iteration of `training_type` gets (quick: the kind's own)."""
        if training_type not in Iteration.TrainingType.values:
            raise ValidationFailed(f"Unknown training type {training_type!r}.")
        if training_type == Iteration.TrainingType.QUICK:
            return self.quick_budget_s()
        low, high = settings.LOUPE_TRAIN_MIN_BUDGET_S, settings.LOUPE_TRAIN_MAX_BUDGET_S
        if not low <= budget_s <= high:
            raise ValidationFailed(
                f"The training budget must be between {low / 60:g} and {high / 60:g} minutes."
            )
        return int(budget_s)
