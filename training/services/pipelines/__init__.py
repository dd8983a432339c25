"""One training pipeline per kind of project, chosen once: `pipeline_for(project)`."""

from __future__ import annotations

from labeling.models import Project
from training.services.pipelines.base import BudgetEstimate, TrainingChoices, TrainingPipeline
from training.services.pipelines.classification import ClassificationPipeline
from training.services.pipelines.detection import DetectionPipeline

__all__ = [
    "BudgetEstimate",
    "ClassificationPipeline",
    "DetectionPipeline",
    "TrainingChoices",
    "TrainingPipeline",
    "pipeline_for",
]

_CLASSIFICATION = ClassificationPipeline()
_DETECTION = DetectionPipeline()


def pipeline_for(project: Project) -> TrainingPipeline:
    """The pipeline of the project's kind (the only place the kind picks the training)."""
    return _DETECTION if project.is_detection else _CLASSIFICATION
