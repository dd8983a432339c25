"""Training API: train, iterations and publishing (performance: training_performance, exports:
training_exports).

Training goes through `start_iteration` exactly as the Train button does (same snapshot, same
checks, same worker queue); the SDK then polls `get_iteration` until `Completed` (a queued or
running iteration reads `Training`, a failed one `Failed` with its reason in
`trainingErrorDetails`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from customvision.models import Publication
from customvision.training_projects import project_and_iteration, project_for
from customvision.training_shapes import (
    iteration_json,
)
from customvision.training_wire import (
    NO_CONTENT,
    body_object,
    cv_error,
    query_bool,
    query_choice,
    query_int,
    query_required,
)
from labeling.models import Project
from project.errors import LoupeError
from training.models import Iteration
from training.services import publishing
from training.services.iterations import TrainingInProgress, TrainingNotNeeded, start_iteration

User = AbstractBaseUser


def _published_for(*iterations: Iteration) -> dict[int, str]:
    """The prediction resource each iteration was published for through this API."""
    rows = Publication.objects.filter(iteration__in=iterations)
    return dict(rows.values_list("iteration_id", "resource_id"))


def _iteration_json(iteration: Iteration, project: Project) -> dict[str, Any]:
    return iteration_json(iteration, project, _published_for(iteration).get(iteration.pk))


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


def get_iterations(request: HttpRequest, user: User, project_id: int) -> list[dict[str, Any]]:
    project = project_for(user, project_id)
    iterations = list(project.iterations.order_by("number"))
    published = _published_for(*iterations)
    return [iteration_json(it, project, published.get(it.pk)) for it in iterations]


def get_iteration(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> dict[str, Any]:
    project, iteration = project_and_iteration(user, project_id, iteration_id)
    return _iteration_json(iteration, project)


def update_iteration(
    request: HttpRequest, user: User, project_id: int, iteration_id: int
) -> dict[str, Any]:
    project, iteration = project_and_iteration(user, project_id, iteration_id)
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
    _, iteration = project_and_iteration(user, project_id, iteration_id)
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


def publish_iteration(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> bool:
    """Publish under `publishName`. `predictionId` (an Azure resource id, required by the SDK)
    means nothing here; it is kept only to be read back as `originalPublishResourceId`. A name
    another iteration holds needs `overwrite=true`, which unpublishes that one first."""
    project, iteration = project_and_iteration(user, project_id, iteration_id)
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
    _, iteration = project_and_iteration(user, project_id, iteration_id)
    if not iteration.is_published:
        raise cv_error("BadRequestIterationNotPublished", f"{iteration.name} is not published.")
    publishing.unpublish_iteration(iteration=iteration, by=user)
    Publication.objects.filter(iteration=iteration).delete()
    return NO_CONTENT
