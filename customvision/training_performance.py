"""Training API: an iteration's performance and its per-image results, read from the stored scores
by the same functions as the performance page, at the threshold (and, for detection, overlap)
asked.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from customvision.ids import Kind, optional_uuid, parse_uuid_list, to_uuid
from customvision.training_media import image_uri
from customvision.training_projects import project_and_iteration
from customvision.training_shapes import (
    ratio,
    tag_performance_json,
)
from customvision.training_wire import (
    cv_error,
    iso,
    query_choice,
    query_float,
    query_int,
    query_text,
)
from labeling.models import Project
from training.models import Iteration
from training.services.detection_performance import DEFAULT_OVERLAP
from training.services.image_results import (
    BOX_KEYS,
    ImageResult,
    figures_at_thresholds,
    image_results,
)

User = AbstractBaseUser


def _trained(iteration: Iteration) -> None:
    if not iteration.is_completed:
        raise cv_error(
            "BadRequestIterationIsNotTrained",
            f"{iteration.name} has no performance yet: it is "
            f"{iteration.get_status_display().lower()}.",
        )


def get_iteration_performance(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> dict[str, Any]:
    """Precision and recall at `threshold` (default: the iteration's saved threshold, which the
    performance page starts at), per tag and overall; detection also at `overlapThreshold`.
    The same figures as the performance page and the REST API (`figures_at_thresholds`)."""
    project, iteration = project_and_iteration(user, project_id, iteration_id)
    _trained(iteration)
    threshold = query_float(request, "threshold", iteration.suggested_threshold)
    overlap = query_float(request, "overlapThreshold", DEFAULT_OVERLAP)
    iteration.project = project
    figures = figures_at_thresholds(iteration, threshold, overlap)
    tags = list(iteration.tags.order_by("index"))
    per_tag = figures.get("per_tag") or [{} for _ in tags]
    return {
        "perTagPerformance": [
            tag_performance_json(tag.tag_id, tag.name, row)
            for tag, row in zip(tags, per_tag, strict=True)
        ],
        "precision": ratio(figures.get("precision")),
        "precisionStdDeviation": 0.0,
        "recall": ratio(figures.get("recall")),
        "recallStdDeviation": 0.0,
        # Classification: mean AP over tags. Detection: mAP at IoU 0.5 (the page's figure).
        "averagePrecision": ratio(figures.get("map")),
    }


def _image_performances(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> tuple[Project, list[ImageResult]]:
    """The iteration's scored images (out-of-fold for quick training, held out otherwise),
    newest first, those with a true label among `tagIds` when given. Every detection is kept
    (threshold 0), as Custom Vision lists them."""
    project, iteration = project_and_iteration(user, project_id, iteration_id)
    _trained(iteration)
    iteration.project = project
    results = image_results(iteration, 0.0)
    wanted = query_text(request, "tagIds")
    if wanted:
        tag_ids = set(parse_uuid_list(wanted, Kind.TAG, field="tagIds", max_count=20))
        results = [r for r in results if tag_ids & {t["tag_id"] for t in r.truth}]
    return project, results


def get_image_performances(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> list[dict[str, Any]]:
    project, results = _image_performances(request, user, project_id, iteration_id)
    order = query_choice(request, "orderBy", ("Newest", "Oldest"), "Newest")
    take = query_int(request, "take", 50, low=0, high=256)
    skip = query_int(request, "skip", 0, low=0, high=10**9)
    if order == "Oldest":
        results.reverse()
    page = results[skip : skip + take]
    images = {i.pk: i for i in project.images.filter(pk__in=[r.image_id for r in page])}
    return [
        _image_performance_json(request, images[result.image_id], result, project.is_detection)
        for result in page
        if result.image_id in images
    ]


def get_image_performance_count(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> int:
    return len(_image_performances(request, user, project_id, iteration_id)[1])


def _box(row: dict[str, Any]) -> dict[str, float]:
    return {key: float(row[key]) for key in BOX_KEYS}


def _image_performance_json(
    request: HttpRequest, image: Any, result: ImageResult, is_detection: bool
) -> dict[str, Any]:
    def tag_id(row: dict[str, Any]) -> str | None:
        return optional_uuid(Kind.TAG, row["tag_id"])

    predictions = [
        {
            "probability": row["probability"],
            "tagId": tag_id(row),
            "tagName": row["name"],
            "boundingBox": _box(row) if is_detection else None,
            "tagType": "Regular",
        }
        for row in result.predictions
    ]
    labels = {row["tag_id"]: row for row in result.truth}.values()
    return {
        "predictions": predictions,
        "id": to_uuid(Kind.IMAGE, image.pk),
        "created": iso(image.created),
        "width": image.width,
        "height": image.height,
        "imageUri": image_uri(request, image.pk, "o"),
        "thumbnailUri": image_uri(request, image.pk, "t"),
        "tags": [{"tagId": tag_id(row), "tagName": row["name"], "created": None} for row in labels],
        "regions": [
            {
                "regionId": None,
                "tagName": row["name"],
                "created": None,
                "tagId": tag_id(row),
                **_box(row),
            }
            for row in (result.truth if is_detection else [])
        ],
    }
