"""Loupe's rows as the Training API's JSON: exactly the camelCase fields of the SDK's msrest
models (tests/customvision/test_contract_training.py compares every key and type with them).

Every field of a model is sent, `null` where Loupe has no value: msrest leaves a missing or
misspelled field `None` without a word, so a complete shape is the only way a renamed field
shows up in a test rather than in a customer's script. Nothing here queries the database
beyond what its caller prefetched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from customvision.ids import Kind, optional_uuid, to_uuid
from customvision.training_wire import cv_error, iso
from labeling.models import Image, Project, Region, Tag
from training.models import Iteration
from training.services.model_export import SUPPORTED_PLATFORMS

# --- Domains ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CvDomain:
    """A Custom Vision domain and the Loupe project kind family and domain it stands for."""

    id: str
    name: str
    type: str  # "Classification" | "ObjectDetection"
    loupe_domain: str  # Project.Domain
    description: str

    @property
    def is_detection(self) -> bool:
        return self.type == "ObjectDetection"


# Classification ids are Azure's own (scripts hard-code them); the detection ids are the ones
# Azure is believed to use, which could not be checked offline: scripts look them up by type and
# name (`d.type == "ObjectDetection" and d.name == "General"`), which works either way. Azure's
# Food, Landmarks, Retail and Logo domains have no Loupe model, so they are not offered: asking
# for one answers BadRequestProjectUnknownDomain rather than quietly training something else.
DOMAINS: tuple[CvDomain, ...] = (
    CvDomain(
        "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31",
        "General",
        "Classification",
        Project.Domain.GENERAL,
        "EfficientNet-Lite2: the most accurate classifier, slower to train and run.",
    ),
    CvDomain(
        "0732100f-1a38-4e49-a514-c9b44c697ab5",
        "General (compact)",
        "Classification",
        Project.Domain.GENERAL_COMPACT,
        "EfficientNet-Lite0: fast to train and run, small enough for devices.",
    ),
    CvDomain(
        "da2e3a8a-40a5-4171-82f4-58522f70fbc1",
        "General",
        "ObjectDetection",
        Project.Domain.GENERAL,
        "A detector on EfficientNet-Lite2.",
    ),
    CvDomain(
        "a27d5ca5-bb19-49d8-a70a-fec086c47f5b",
        "General (compact)",
        "ObjectDetection",
        Project.Domain.GENERAL_COMPACT,
        "A detector on EfficientNet-Lite0: fast to train and run.",
    ),
)
DEFAULT_CLASSIFICATION_DOMAIN = DOMAINS[0]
_BY_ID = {domain.id: domain for domain in DOMAINS}


def find_domain(domain_id: str) -> CvDomain:
    domain = _BY_ID.get(domain_id.strip().lower())
    if domain is None:
        raise cv_error(
            "NotFoundDomain",
            f"There is no domain with the id “{domain_id[:60]}”. This server offers: "
            + ", ".join(f"{d.name} ({d.type}, {d.id})" for d in DOMAINS)
            + ".",
        )
    return domain


def domain_of(project: Project) -> CvDomain:
    for domain in DOMAINS:
        if domain.is_detection == project.is_detection and domain.loupe_domain == project.domain:
            return domain
    return DOMAINS[2] if project.is_detection else DEFAULT_CLASSIFICATION_DOMAIN


def domain_json(domain: CvDomain) -> dict[str, Any]:
    return {
        "id": domain.id,
        "name": domain.name,
        "type": domain.type,
        # Every domain's models export (training.services.model_export).
        "exportable": True,
        "enabled": True,
        "exportablePlatforms": list(SUPPORTED_PLATFORMS),
        "modelInformation": {
            "estimatedModelSizeInMegabytes": None,
            "description": domain.description,
        },
    }


# --- Projects and tags -------------------------------------------------------------------------


def classification_type(project: Project) -> str | None:
    """Custom Vision's classificationType: none for detection projects."""
    if project.is_detection:
        return None
    return "Multiclass" if project.is_multiclass else "Multilabel"


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": to_uuid(Kind.PROJECT, project.pk),
        "name": project.name,
        "description": project.description,
        "settings": {
            "domainId": domain_of(project).id,
            "classificationType": classification_type(project),
            "targetExportPlatforms": [],
            "useNegativeSet": True,
            "detectionParameters": None,
            "imageProcessingSettings": {"augmentationMethods": {}},
            "exportModelContainerUri": None,
            "notificationQueueUri": None,
        },
        "created": iso(project.created),
        # Loupe keeps no modification time for a project; its creation is the honest lower bound.
        "lastModified": iso(project.created),
        "thumbnailUri": None,
        "drModeEnabled": False,
        "status": "Succeeded",
    }


TAG_TYPES = {Tag.Kind.REGULAR: "Regular", Tag.Kind.NEGATIVE: "Negative"}


def tag_json(
    tag_id: int | None, name: str, description: str, kind: str, count: int
) -> dict[str, Any]:
    return {
        "id": optional_uuid(Kind.TAG, tag_id),
        "name": name,
        "description": description,
        "type": TAG_TYPES.get(kind, "Regular"),
        "imageCount": count,
    }


# --- Images ----------------------------------------------------------------------------------

UriOf = Callable[[int, str], str]  # (image id, "o" | "t") -> a fetchable address


def image_tag_json(tag_id: int, name: str, created: Any) -> dict[str, Any]:
    return {"tagId": to_uuid(Kind.TAG, tag_id), "tagName": name, "created": iso(created)}


def region_json(region: Region) -> dict[str, Any]:
    return {
        "regionId": to_uuid(Kind.REGION, region.pk),
        "tagName": region.tag.name,
        "created": iso(region.created),
        "tagId": to_uuid(Kind.TAG, region.tag_id),
        "left": region.left,
        "top": region.top,
        "width": region.width,
        "height": region.height,
    }


def image_json(image: Image, uri_of: UriOf) -> dict[str, Any]:
    """An Image with its tags and regions (prefetched: `image_tags__tag`, `regions__tag`).

    "No objects" (the Negative mark of a detection image) is an image tag here too, as it is in
    Custom Vision.
    """
    original = uri_of(image.pk, "o")
    return {
        "id": to_uuid(Kind.IMAGE, image.pk),
        "created": iso(image.created),
        "width": image.width,
        "height": image.height,
        # Loupe keeps no separate resized copy: the original is what training resizes.
        "resizedImageUri": original,
        "thumbnailUri": uri_of(image.pk, "t"),
        "originalImageUri": original,
        "tags": [image_tag_json(t.tag_id, t.tag.name, t.created) for t in image.image_tags.all()],
        "regions": [region_json(region) for region in image.regions.all()],
        "metadata": None,
    }


# --- Iterations ---------------------------------------------------------------------------------

_STATUSES = {
    Iteration.Status.QUEUED: "Training",
    Iteration.Status.TRAINING: "Training",
    Iteration.Status.COMPLETED: "Completed",
    Iteration.Status.FAILED: "Failed",
}
TRAINING_TYPES = {
    Iteration.TrainingType.QUICK: "Regular",
    Iteration.TrainingType.ADVANCED: "Advanced",
}


def iteration_json(
    iteration: Iteration, project: Project, publish_resource: str | None = None
) -> dict[str, Any]:
    trained = iteration.finished if iteration.is_completed else None
    minutes = None
    if iteration.started and iteration.finished:
        minutes = math.ceil((iteration.finished - iteration.started).total_seconds() / 60)
    modified = iteration.finished or iteration.started or iteration.created
    exportable = iteration.is_completed and bool(iteration.artifact)
    return {
        "id": to_uuid(Kind.ITERATION, iteration.pk),
        "name": iteration.name,
        "status": _STATUSES.get(iteration.status, "Failed"),
        "created": iso(iteration.created),
        "lastModified": iso(modified),
        "trainedAt": iso(trained),
        "projectId": to_uuid(Kind.PROJECT, project.pk),
        "exportable": exportable,
        "exportableTo": list(SUPPORTED_PLATFORMS) if exportable else [],
        "domainId": domain_of(project).id,
        "classificationType": None
        if project.is_detection
        else ("Multilabel" if iteration.is_multilabel else "Multiclass"),
        "trainingType": TRAINING_TYPES.get(iteration.training_type, "Regular"),
        "reservedBudgetInHours": math.ceil(iteration.budget_s / 3600)
        if iteration.training_type == Iteration.TrainingType.ADVANCED
        else 0,
        "trainingTimeInMinutes": minutes,
        "publishName": iteration.published_name,
        "originalPublishResourceId": publish_resource if iteration.is_published else None,
        "customBaseModelInfo": None,
        "trainingErrorDetails": iteration.failure_message or None
        if iteration.status == Iteration.Status.FAILED
        else None,
    }


# --- Performance and predictions ------------------------------------------------------------


def ratio(value: float | None) -> float:
    """A figure in 0..1; an undefined one (no image predicted at this threshold) as 0.0, since
    the SDK's users multiply it (`precision * 100`) without a None check."""
    if value is None or not math.isfinite(value):
        return 0.0
    return float(value)


def tag_performance_json(tag_id: int | None, name: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": optional_uuid(Kind.TAG, tag_id),
        "name": name,
        "precision": ratio(figures.get("precision")),
        # Loupe reports one figure per threshold, not a spread over folds.
        "precisionStdDeviation": 0.0,
        "recall": ratio(figures.get("recall")),
        "recallStdDeviation": 0.0,
        "averagePrecision": ratio(figures.get("ap")),
    }
