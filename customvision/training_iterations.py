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

from customvision.ids import Kind, parse_uuid_list, to_uuid
from customvision.models import Publication
from customvision.training_media import image_uri
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
from labeling.models import Project, Role
from project.errors import LoupeError
from training.models import Iteration
from training.services import publishing
from training.services.detection_performance import (
    DEFAULT_OVERLAP,
    detection_figures_at,
    load_detection_table,
)
from training.services.iterations import start_iteration
from training.services.performance import figures_at, load_scores

User = AbstractBaseUser
EXPORT_PLATFORMS = ("CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK", "OpenVino")


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
    """start_iteration's refusals under Custom Vision's codes (its messages name the case)."""
    if err.code in ("not_found", "forbidden"):
        return err
    if "Nothing changed" in err.message:
        return cv_error("BadRequestTrainingNotNeeded", err.message)
    if "already queued or running" in err.message:
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
    performance page starts at), per tag and overall; detection also at `overlapThreshold`."""
    project, iteration = _iteration(user, project_id, iteration_id)
    _trained(iteration)
    threshold = query_float(request, "threshold", iteration.suggested_threshold)
    if project.is_detection:
        overlap = query_float(request, "overlapThreshold", DEFAULT_OVERLAP)
        table = load_detection_table(iteration)
        figures = detection_figures_at(iteration, table, threshold, overlap)
        tags = table.tags
    else:
        table = load_scores(iteration)
        figures = figures_at(iteration, table, threshold)
        tags = table.tags
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


def _scored_rows(project: Project, iteration: Iteration) -> tuple[list[Any], list[dict[str, Any]]]:
    """The iteration's tags and its held-out images, each row with `labels`, `boxes` and
    `predictions` in tag-index terms."""
    if project.is_detection:
        table = load_detection_table(iteration)
        rows = [
            {
                "id": r["id"],
                "labels": sorted({b[0] for b in r["gt"]}),
                "boxes": r["gt"],
                "dets": r["dets"],
            }
            for r in table.rows
        ]
        return table.tags, rows
    scores = load_scores(iteration)
    rows = [{"id": r["id"], "labels": r["y"], "boxes": [], "scores": r["s"]} for r in scores.rows]
    return scores.tags, rows


def _image_performances(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> tuple[Project, list[Any], list[dict[str, Any]]]:
    project, iteration = _iteration(user, project_id, iteration_id)
    _trained(iteration)
    tags, rows = _scored_rows(project, iteration)
    rows = [row for row in rows if row["id"] is not None]  # images deleted since training
    wanted = query_text(request, "tagIds")
    if wanted:
        tag_ids = set(parse_uuid_list(wanted, Kind.TAG, field="tagIds", max_count=20))
        indexes = {tag.index for tag in tags if tag.tag_id in tag_ids}
        rows = [row for row in rows if indexes & set(row["labels"])]
    return project, tags, rows


def get_image_performances(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> list[dict[str, Any]]:
    """The held-out images (out-of-fold for quick training) with the scores the iteration gave
    them: the images behind the performance figures."""
    project, tags, rows = _image_performances(request, user, project_id, iteration_id)
    order = query_choice(request, "orderBy", ("Newest", "Oldest"), "Newest")
    take = query_int(request, "take", 50, low=0, high=256)
    skip = query_int(request, "skip", 0, low=0, high=10**9)
    rows.sort(key=lambda row: row["id"], reverse=order == "Newest")
    page = rows[skip : skip + take]
    images = {i.pk: i for i in project.images.filter(pk__in=[r["id"] for r in page])}
    return [
        _image_performance_json(request, images[row["id"]], tags, row)
        for row in page
        if row["id"] in images
    ]


def get_image_performance_count(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> int:
    return len(_image_performances(request, user, project_id, iteration_id)[2])


def _image_performance_json(
    request: HttpRequest, image: Any, tags: list[Any], row: dict[str, Any]
) -> dict[str, Any]:
    def tag_id(index: int) -> str | None:
        tag = tags[int(index)]
        return to_uuid(Kind.TAG, tag.tag_id) if tag.tag_id is not None else None

    if "scores" in row:
        predictions = [
            {
                "probability": float(score),
                "tagId": tag_id(index),
                "tagName": tags[index].name,
                "boundingBox": None,
                "tagType": "Regular",
            }
            for index, score in enumerate(row["scores"])
        ]
    else:
        predictions = [
            {
                "probability": float(probability),
                "tagId": tag_id(index),
                "tagName": tags[int(index)].name,
                "boundingBox": {"left": left, "top": top, "width": width, "height": height},
                "tagType": "Regular",
            }
            for index, probability, left, top, width, height in row["dets"]
        ]
    predictions.sort(key=lambda p: -p["probability"])
    return {
        "predictions": predictions,
        "id": to_uuid(Kind.IMAGE, image.pk),
        "created": iso(image.created),
        "width": image.width,
        "height": image.height,
        "imageUri": image_uri(request, image.pk, "o"),
        "thumbnailUri": image_uri(request, image.pk, "t"),
        "tags": [
            {"tagId": tag_id(index), "tagName": tags[index].name, "created": None}
            for index in row["labels"]
        ],
        "regions": [
            {
                "regionId": None,
                "tagName": tags[int(index)].name,
                "created": None,
                "tagId": tag_id(index),
                "left": left,
                "top": top,
                "width": width,
                "height": height,
            }
            for index, left, top, width, height in row["boxes"]
        ],
    }


# --- Exports -------------------------------------------------------------------------------------


def get_exports(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> list[Any]:
    """No export has ever been made on this server: an empty list (the SDK's loop waits on
    entries, so it stops here rather than spinning)."""
    _iteration(user, project_id, iteration_id)
    return []


def export_iteration(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> Any:
    project_for(user, project_id, Role.ADMIN)
    _iteration(user, project_id, iteration_id)
    platform = query_required(request, "platform")
    if platform.lower() not in {p.lower() for p in EXPORT_PLATFORMS}:
        raise cv_error(
            "ErrorExporterInvalidPlatform",
            f"Unknown export platform “{platform[:40]}”; Custom Vision's are "
            f"{', '.join(EXPORT_PLATFORMS)}.",
        )
    raise cv_error(
        "BadRequestNotSupported",
        f"Exporting models ({platform}) is not supported by this server: its models run behind "
        "its own prediction API.",
    )
