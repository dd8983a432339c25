"""What an iteration trains on, whatever the project's kind: its pipeline takes the snapshot and
checks it (training.services.classification_checks, training.services.detection_checks).

The snapshot is taken when Train is pressed, in the same transaction that creates the iteration,
so later tagging never changes what a queued or running iteration learns from.
"""

from __future__ import annotations

from labeling.models import Project
from training.services.classification_checks import MIN_IMAGES_PER_TAG, MIN_TAGS
from training.services.pipelines import pipeline_for
from training.services.snapshot import Snapshot

__all__ = ["MIN_IMAGES_PER_TAG", "MIN_TAGS", "check_trainable", "take_snapshot"]


def take_snapshot(project: Project) -> Snapshot:
    """The project's training images and their labels (or boxes), as training would see them."""
    return pipeline_for(project).take_snapshot(project)


def check_trainable(project: Project, snapshot: Snapshot) -> None:
    """Raise LabelRuleError when the snapshot cannot make a model, saying what to fix."""
    pipeline_for(project).check_trainable(snapshot)
