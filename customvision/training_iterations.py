"""Training API: train, iterations, publishing, performance and exports.

Training goes through `start_iteration` exactly as the Train button does (same snapshot, same
checks, same worker queue); the SDK then polls `get_iteration` until `Completed` (a queued or
running iteration reads `Training`, a failed one `Failed` with its reason in
`trainingErrorDetails`). Performance is read from the iteration's stored scores by the same
functions as the performance page, at the threshold (and, for detection, overlap) asked.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from customvision.ids import Kind, optional_uuid, parse_uuid_list, to_uuid
from customvision.models import Publication
from customvision.training_media import export_uri, image_uri
from customvision.training_projects import iteration_for, project_for
from customvision.training_shapes import (
    iteration_json,
    ratio,
    tag_performance_json,
)
from customvision.training_wire import (
    NO_CONTENT,
    body_object,
    cv_error,
    iso,
    query_bool,
    query_choice,
    query_float,
    query_int,
    query_required,
    query_text,
)
from labeling.models import Project
from project.errors import LoupeError
from training.models import Iteration, ModelExport
from training.services import publishing
from training.services.detection_performance import DEFAULT_OVERLAP
from training.services.image_results import (
    BOX_KEYS,
    ImageResult,
    figures_at_thresholds,
    image_results,
)
from training.services.iterations import TrainingInProgress, TrainingNotNeeded, start_iteration
from training.services.model_export import (
    ExportPlatformNotSupported,
    IterationNotExportable,
    list_model_exports,
    start_model_export,
)

User = AbstractBaseUser


def _published_for(*iterations: Iteration) -> dict[int, str]:
    """The prediction resource each iteration was published for through this API."""
    rows = Publication.objects.filter(iteration__in=iterations)
    return dict(rows.values_list("iteration_id", "resource_id"))


def _iteration_json(iteration: Iteration, project: Project) -> dict[str, Any]:
    return iteration_json(iteration, project, _published_for(iteration).get(iteration.pk))


def _iteration(user: User, project_id: int, iteration_id: int) -> tuple[Project, Iteration]:
    project = project_for(user, project_id)
    return project, iteration_for(project, iteration_id)


# --- Train -------------------------------------------------------------------------------------


def _budget_s(request: HttpRequest, training_type: str) -> int:
    """Custom Vision's reserved budget (whole hours, a ceiling) as Loupe's budget in seconds,
    kept within this server's limits (LOUPE_TRAIN_MIN/MAX_BUDGET_S): 0 hours, which the SDK
    sends by default, means the shortest budget this server allows."""
    hours = query_int(request, "reservedBudgetInHours", 0, low=0, high=10_000)
    if training_type != Iteration.TrainingType.ADVANCED:
        return 0
    low, high = settings.LOUPE_TRAIN_MIN_BUDGET_S, settings.LOUPE_TRAIN_MAX_BUDGET_S
    return max(low, min(high, hours * 3600))


def _training_error(err: LoupeError) -> LoupeError:
    """start_iteration's refusals under Custom Vision's codes (by the error's class)."""
    if err.code in ("not_found", "forbidden"):
        return err
    if isinstance(err, TrainingNotNeeded):
        return cv_error("BadRequestTrainingNotNeeded", err.message)
    if isinstance(err, TrainingInProgress):
        return cv_error("BadRequestTrainingAlreadyInProgress", err.message)
    return cv_error("BadRequestTrainingValidationFailed", err.message)


def train_project(request: HttpRequest, user: User, project_id: int) -> dict[str, Any]:
    project = project_for(user, project_id)
    kind = query_choice(request, "trainingType", ("Regular", "Advanced"), "Regular")
    training_type = (
        Iteration.TrainingType.ADVANCED if kind == "Advanced" else Iteration.TrainingType.QUICK
    )
    force = query_bool(request, "forceTrain")
    budget_s = _budget_s(request, training_type)
    # TrainingParameters: training on a subset of tags or from another project's model are
    # not Loupe features; refused by name rather than silently training on everything.
    parameters = body_object(request, required=False)
    given = sorted(key for key, value in parameters.items() if value)
    if given:
        raise cv_error(
            "BadRequestNotSupported",
            f"{', '.join(given)}: not supported by this server; it trains on every tag.",
        )
    # notificationEmailAddress: this server sends no mail; the SDK polls get_iteration anyway.
    try:
        iteration = start_iteration(
            project=project, by=user, training_type=training_type, budget_s=budget_s, force=force
        )
    except LoupeError as err:
        raise _training_error(err) from None
    return _iteration_json(iteration, project)


# --- Iterations --------------------------------------------------------------------------------


def get_iterations(request: HttpRequest, user: User, project_id: int) -> list[dict[str, Any]]:
    project = project_for(user, project_id)
    iterations = list(project.iterations.order_by("number"))
    published = _published_for(*iterations)
    return [iteration_json(it, project, published.get(it.pk)) for it in iterations]


def get_iteration(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> dict[str, Any]:
    project, iteration = _iteration(user, project_id, iteration_id)
    return _iteration_json(iteration, project)


def update_iteration(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> dict[str, Any]:
    project, iteration = _iteration(user, project_id, iteration_id)
    name = body_object(request).get("name")
    if name is not None:
        if not isinstance(name, str):
            raise cv_error("BadRequestIterationName", "“name” must be a string.")
        try:
            iteration = publishing.rename_iteration(iteration=iteration, name=name, by=user)
        except LoupeError as err:
            if err.code in ("not_found", "forbidden"):
                raise
            raise cv_error("BadRequestIterationName", err.message) from None
    return _iteration_json(iteration, project)


def delete_iteration(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> object:
    _, iteration = _iteration(user, project_id, iteration_id)
    if iteration.is_published:
        raise cv_error(
            "BadRequestIterationIsPublished",
            f"{iteration.name} is published as “{iteration.published_name}”. Unpublish it first.",
        )
    try:
        publishing.delete_iteration(iteration=iteration, by=user)
    except LoupeError as err:
        if err.code in ("not_found", "forbidden"):
            raise
        raise cv_error("BadRequest", err.message) from None
    return NO_CONTENT


# --- Publishing ----------------------------------------------------------------------------------


def publish_iteration(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> bool:
    """Publish under `publishName`. `predictionId` (an Azure resource id, required by the SDK)
    means nothing here; it is kept only to be read back as `originalPublishResourceId`. A name
    another iteration holds needs `overwrite=true`, which unpublishes that one first."""
    project, iteration = _iteration(user, project_id, iteration_id)
    name = query_required(request, "publishName")
    resource = query_required(request, "predictionId")
    overwrite = query_bool(request, "overwrite")
    if not iteration.is_completed:
        raise cv_error(
            "BadRequestIterationIsNotTrained",
            f"{iteration.name} is not trained yet ({iteration.get_status_display().lower()}).",
        )
    if not publishing.PUBLISH_NAME.fullmatch(name):
        raise cv_error(
            "BadRequestInvalidPublishName",
            f"“{name[:100]}” cannot be a publish name: use letters, digits, - and _.",
        )
    holder = project.iterations.filter(published_name=name).exclude(pk=iteration.pk).first()
    if holder is not None:
        if not overwrite:
            raise cv_error(
                "BadRequestInvalidPublishName",
                f"{holder.name} is already published as “{name}”; pass overwrite=true to move "
                "the name to this iteration.",
            )
        publishing.unpublish_iteration(iteration=holder, by=user)
    try:
        publishing.publish_iteration(iteration=iteration, name=name, by=user)
    except LoupeError as err:
        if err.code in ("not_found", "forbidden"):
            raise
        raise cv_error("BadRequestInvalidPublishName", err.message) from None
    Publication.objects.update_or_create(
        iteration=iteration, defaults={"resource_id": resource[:500]}
    )
    return True


def unpublish_iteration(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> object:
    _, iteration = _iteration(user, project_id, iteration_id)
    if not iteration.is_published:
        raise cv_error("BadRequestIterationNotPublished", f"{iteration.name} is not published.")
    publishing.unpublish_iteration(iteration=iteration, by=user)
    Publication.objects.filter(iteration=iteration).delete()
    return NO_CONTENT


# --- Performance ----------------------------------------------------------------------------------


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
    project, iteration = _iteration(user, project_id, iteration_id)
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
    project, iteration = _iteration(user, project_id, iteration_id)
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


# --- Exports -------------------------------------------------------------------------------------


_EXPORT_STATUSES = {
    ModelExport.Status.QUEUED: "Exporting",
    ModelExport.Status.EXPORTING: "Exporting",
    ModelExport.Status.DONE: "Done",
    ModelExport.Status.FAILED: "Failed",
}


def _export_json(request: HttpRequest, export: ModelExport) -> dict[str, Any]:
    done = export.status == ModelExport.Status.DONE and bool(export.file)
    return {
        "platform": export.platform,
        "status": _EXPORT_STATUSES.get(export.status, "Failed"),
        "downloadUri": export_uri(request, export.pk) if done else None,
        "flavor": None,
        # Exporting again after a threshold change rebuilds the same export in place.
        "newerVersionAvailable": False,
    }


def get_exports(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> list[Any]:
    """The iteration's model exports (ONNX, TorchScript): `Exporting` until a worker has built
    the zip, then `Done` with a signed `downloadUri`, or `Failed`."""
    _, iteration = _iteration(user, project_id, iteration_id)
    return [_export_json(request, export) for export in list_model_exports(iteration)]


def export_iteration(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> Any:
    """Queue an export (training.services.model_export: ONNX and TorchScript; Custom Vision's
    other platforms are refused by name). The SDK then polls `get_exports` until `Done`."""
    project, iteration = _iteration(user, project_id, iteration_id)
    iteration.project = project
    platform = query_required(request, "platform")
    if query_text(request, "flavor"):
        raise cv_error(
            "BadRequestNotSupported",
            "Export flavors are not supported by this server; leave “flavor” out.",
        )
    try:
        export = start_model_export(iteration=iteration, platform=platform, by=user)
    except ExportPlatformNotSupported as err:
        raise cv_error("BadRequestNotSupported", err.message) from None
    except IterationNotExportable as err:
        raise cv_error("BadRequestExportValidationFailed", err.message) from None
    return _export_json(request, export)
