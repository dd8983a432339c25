"""Training API: quick test, stored predictions (query, delete) and suggested tags and regions.

Quick test is the browser's quick test (`predictions.services.predict.quick_test`: any
completed iteration, stored only for reviewers and up). Stored predictions are the Predictions
tab's: a query lists the open ones (not yet moved into training data nor dismissed), and
`delete_prediction` dismisses them through the tab's own service, so they leave the tab too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest

from customvision.ids import Kind, parse_uuid_list, to_uuid
from customvision.prediction import image_prediction, prediction_result
from customvision.training_media import image_uri
from customvision.training_projects import iteration_for, project_for
from customvision.training_shapes import domain_of
from customvision.training_wire import (
    NO_CONTENT,
    body_date,
    body_object,
    cv_error,
    image_parts,
    iso,
    optional_id,
    query_bool,
    query_text,
)
from labeling.access import STORED_PREDICTION_ROLE
from labeling.models import Project, Role
from predictions.models import Prediction, PredictionScore
from predictions.services.predict import quick_test
from predictions.services.suggestions import suggest_for_images
from predictions.services.triage import dismiss_predictions
from project.errors import LoupeError
from training.services.publishing import current_iteration

User = AbstractBaseUser
MULTIPART_SLACK_BYTES = 64 * 1024
MAX_QUERY_RESULTS = 256
DEFAULT_QUERY_RESULTS = 50
MAX_QUERY_TAGS = 2  # "limited to combining 2 tags", as Custom Vision documents


def _quick_test(request: HttpRequest, user: User, project_id: int, *, url: bool) -> Any:
    project = project_for(user, project_id)
    iteration_id = optional_id(
        query_text(request, "iterationId"), Kind.ITERATION, field="iterationId"
    )
    if iteration_id is None:
        current = current_iteration(project, with_model=True)
        if current is None:
            raise cv_error(
                "NotFoundIteration", "This project has no trained iteration to test with yet."
            )
        iteration_id = current.pk
    else:
        iteration_for(project, iteration_id)
    store = query_bool(request, "store", default=True)
    if url:
        address = body_object(request, max_bytes=16 * 1024).get("url")
        if not isinstance(address, str) or not address.strip():
            raise cv_error("BadRequestImageUrl", 'The body must be {"url": "..."}.')
        result = quick_test(
            project=project, iteration_id=iteration_id, by=user, store=store, url=address
        )
    else:
        limit = settings.LOUPE_MAX_PREDICTION_BYTES + MULTIPART_SLACK_BYTES
        parts = image_parts(request, max_bytes=limit)
        part = parts[0] if parts else None
        result = quick_test(
            project=project,
            iteration_id=iteration_id,
            by=user,
            store=store,
            data=part.data if part else b"",
            name=part.name if part else "",
        )
    return image_prediction(result.target, result.outcome, result.prediction)


def quick_test_image(request: HttpRequest, user: User, project_id: int) -> Any:
    return _quick_test(request, user, project_id, url=False)


def quick_test_image_url(request: HttpRequest, user: User, project_id: int) -> Any:
    return _quick_test(request, user, project_id, url=True)


# --- Stored predictions ---------------------------------------------------------------------------


def _query_tags(raw: object) -> list[tuple[int, float, float]]:
    if raw in (None, []):
        return []
    if not isinstance(raw, list) or len(raw) > MAX_QUERY_TAGS:
        raise cv_error(
            "BadRequestPredictionTagsExceededCount",
            f"“tags” is a list of at most {MAX_QUERY_TAGS} tag filters.",
        )
    filters = []
    for index, row in enumerate(raw):
        if not isinstance(row, dict):
            raise cv_error(
                "BadRequestPredictionInvalidQueryParameters", "A tag filter is an object."
            )
        [tag_id] = parse_uuid_list(
            [row.get("id")], Kind.TAG, field=f"tags[{index}].id", max_count=1
        )
        low, high = row.get("minThreshold", 0.0), row.get("maxThreshold", 1.0)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise cv_error(
                "BadRequestPredictionInvalidQueryParameters", "Tag thresholds must be numbers."
            )
        filters.append((tag_id, float(low), float(high)))
    return filters


def _matching(
    project: Project, token: dict[str, Any]
) -> tuple[QuerySet[Prediction], datetime | None, datetime | None]:
    """The project's open stored predictions the token's filters keep, and its time window."""
    rows = Prediction.objects.open().filter(project=project)
    iteration_id = optional_id(token.get("iterationId"), Kind.ITERATION, field="iterationId")
    if iteration_id is not None:
        rows = rows.of_iteration(iteration_for(project, iteration_id).pk)
    application = token.get("application")
    if application:
        rows = rows.filter(application=str(application)[:100])
    start = body_date(token.get("startTime"), "startTime")
    end = body_date(token.get("endTime"), "endTime")
    if start is not None:
        rows = rows.filter(created__gte=start)
    if end is not None:
        rows = rows.filter(created__lte=end)
    for tag_id, low, high in _query_tags(token.get("tags")):
        scores = PredictionScore.objects.filter(
            prediction=OuterRef("pk"), tag_id=tag_id, probability__gte=low, probability__lte=high
        )
        rows = rows.filter(Exists(scores))
    return rows, start, end


_ORDERINGS = {"Newest": ("-id",), "Oldest": ("id",), "Suggested": ("-uncertainty", "-id")}


def query_predictions(request: HttpRequest, user: User, project_id: int) -> dict[str, Any]:
    """PredictionQueryToken in, PredictionQueryResult out: the open stored predictions by
    iteration, application, time window and tag probability ranges, newest first (or oldest,
    or `Suggested`: the most uncertain first, as the tab's ranking reads them). Paging: the
    token comes back with `continuation` set while more results follow."""
    project = project_for(user, project_id, STORED_PREDICTION_ROLE)
    token = body_object(request, required=False)
    rows, start, end = _matching(project, token)
    order = str(token.get("orderBy") or "Newest")
    if order not in _ORDERINGS:
        raise cv_error(
            "BadRequestPredictionInvalidQueryParameters",
            "“orderBy” is Newest, Oldest or Suggested.",
        )
    max_count = token.get("maxCount") or DEFAULT_QUERY_RESULTS
    if not isinstance(max_count, int) or isinstance(max_count, bool) or max_count < 1:
        raise cv_error(
            "BadRequestPredictionInvalidQueryParameters", "“maxCount” is a positive whole number."
        )
    max_count = min(max_count, MAX_QUERY_RESULTS)
    # The continuation is the offset this server handed out; anything else starts over.
    continuation = str(token.get("continuation") or "")
    offset = int(continuation) if continuation.isdigit() and len(continuation) <= 9 else 0
    ordered = rows.order_by(*_ORDERINGS[order]).select_related("image")
    page = list(ordered[offset : offset + max_count + 1])
    domain = domain_of(project).id
    return {
        "token": {
            **{key: token.get(key) for key in ("tags", "iterationId", "application")},
            "session": str(token.get("session") or "loupe"),
            "continuation": str(offset + max_count) if len(page) > max_count else "",
            "maxCount": max_count,
            "orderBy": order,
            "startTime": iso(start),
            "endTime": iso(end),
        },
        "results": [_stored_json(request, project, domain, p) for p in page[:max_count]],
    }


def _stored_json(
    request: HttpRequest, project: Project, domain: str, prediction: Prediction
) -> dict[str, Any]:
    original = image_uri(request, prediction.image_id, "o")
    return {
        "resizedImageUri": original,
        "thumbnailUri": image_uri(request, prediction.image_id, "t"),
        "originalImageUri": original,
        "domain": domain,
        "id": to_uuid(Kind.PREDICTION, prediction.pk),
        "project": to_uuid(Kind.PROJECT, project.pk),
        "iteration": to_uuid(Kind.ITERATION, prediction.iteration_id),
        "created": iso(prediction.created),
        "predictions": [prediction_result(row) for row in prediction.results],
    }


def delete_prediction(request: HttpRequest, user: User, project_id: int) -> object:
    """Dismiss the listed stored predictions (the Predictions tab's Dismiss): they leave the
    tab and every query. Ids that are not open predictions of the project are skipped."""
    project = project_for(user, project_id, STORED_PREDICTION_ROLE)
    ids = parse_uuid_list(query_text(request, "ids"), Kind.PREDICTION, field="ids", max_count=64)
    if not ids:
        raise cv_error("BadRequestPredictionIdsMissing", "Name the predictions to delete (ids).")
    image_ids = list(
        Prediction.objects.open()
        .filter(project=project, pk__in=ids)
        .values_list("image_id", flat=True)
    )
    if image_ids:
        dismiss_predictions(project=project, image_ids=image_ids, by=user)
    return NO_CONTENT


# --- Suggested tags and regions -------------------------------------------------------------------


def suggest_tags_and_regions(
    request: HttpRequest, user: User, project_id: int
) -> list[dict[str, Any]]:
    """Run `iterationId` on the listed untagged images now; the suggestions are also stored,
    so the tagging view offers them. Tagged images and unknown ids are skipped."""
    project = project_for(user, project_id, Role.REVIEWER)
    iteration_id = optional_id(
        query_text(request, "iterationId"), Kind.ITERATION, field="iterationId"
    )
    if iteration_id is None:
        raise cv_error(
            "BadRequestRequiredParamIsNull", "The query parameter “iterationId” is required."
        )
    iteration = iteration_for(project, iteration_id)
    image_ids = parse_uuid_list(
        query_text(request, "imageIds"), Kind.IMAGE, field="imageIds", max_count=64
    )
    if not image_ids:
        raise cv_error("BadRequestRequiredParamIsNull", "Name the images (imageIds).")
    try:
        suggested = suggest_for_images(
            project=project, iteration=iteration, image_ids=image_ids, by=user
        )
    except LoupeError as err:
        if err.code in ("not_found", "forbidden"):
            raise
        raise cv_error("BadRequestIterationIsNotTrained", err.message) from None
    return [
        {
            "id": to_uuid(Kind.IMAGE, image.pk),
            "project": to_uuid(Kind.PROJECT, project.pk),
            "iteration": to_uuid(Kind.ITERATION, iteration.pk),
            "created": iso(image.created),
            "predictions": [prediction_result(row) for row in outcome.results],
            "predictionUncertainty": float(outcome.uncertainty),
        }
        for image, outcome in suggested
    ]
