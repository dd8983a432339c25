"""Publishing, the default and current iteration, renaming, thresholds and deletion of iterations.

Every write is for admins; `current_iteration` is a read any member's page asks.

The publish name is what the prediction API calls an iteration by; it is unique per project
(a database constraint). A published iteration cannot be deleted: clients may be calling it.
"""

from __future__ import annotations

import logging
import re

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from labeling.access import require_role
from labeling.models import Project, Role
from project.errors import LabelRuleError, ValidationFailed
from training.models import Iteration
from training.services.figures import remember_headline
from training.services.iteration_files import iteration_files

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
# The publish name is a path segment of the prediction URL (…/classify/iterations/<name>/image), so,
# as in Custom Vision, it takes only characters that never need escaping in a URL.
PUBLISH_NAME = re.compile(r"[A-Za-z0-9_-]+")


def current_iteration(project: Project, *, with_model: bool = False) -> Iteration | None:
    """The project's current iteration: its default, else its latest completed one; or None.

    The one rule behind every place that preselects an iteration (the Performance tab, the
    Predictions tab, Quick test, Suggest tags), so they never disagree about which model "the"
    model is. `with_model` keeps only iterations with a model file, for the places that run it.
    """
    completed = project.iterations.completed()
    if with_model:
        completed = completed.exclude(artifact="")
    # One query: the default first, then the newest.
    return completed.order_by("-is_default", "-number").first()


def _clean_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed(f"The {what} cannot be empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"The {what} can have at most {MAX_NAME_LENGTH} characters.")
    return name


def _require_completed(iteration: Iteration, action: str) -> None:
    if not iteration.is_completed:
        raise LabelRuleError(
            f"Only a completed iteration can be {action}; "
            f"{iteration.name} is {iteration.get_status_display().lower()}."
        )


def publish_iteration(*, iteration: Iteration, name: str, by: AbstractBaseUser) -> Iteration:
    """Publish a completed iteration under `name` (renaming its publication if already out)."""
    require_role(by, iteration.project, Role.ADMIN)
    _require_completed(iteration, "published")
    name = _clean_name(name, "publish name")
    if not PUBLISH_NAME.fullmatch(name):
        raise ValidationFailed(
            f"“{name}” cannot be a publish name: use only letters, digits, hyphens (-) and "
            "underscores (_), as it becomes part of the prediction URL."
        )
    taken = (
        Iteration.objects.filter(project_id=iteration.project_id, published_name=name)
        .exclude(pk=iteration.pk)
        .first()
    )
    if taken is not None:
        raise ValidationFailed(
            f"{taken.name} is already published as “{name}”. "
            "Unpublish it first or choose another name."
        )
    try:
        with transaction.atomic():
            Iteration.objects.filter(pk=iteration.pk).update(published_name=name)
    except IntegrityError:  # published by someone else between the check and the write
        raise ValidationFailed(f"The name “{name}” was just taken. Choose another.") from None
    iteration.published_name = name
    return iteration


@transaction.atomic
def unpublish_iteration(*, iteration: Iteration, by: AbstractBaseUser) -> Iteration:
    require_role(by, iteration.project, Role.ADMIN)
    if not iteration.is_published:
        raise LabelRuleError(f"{iteration.name} is not published.")
    Iteration.objects.filter(pk=iteration.pk).update(published_name="")
    iteration.published_name = ""
    return iteration


@transaction.atomic
def make_default_iteration(*, iteration: Iteration, by: AbstractBaseUser) -> Iteration:
    """Make the iteration the project's default (the current one everywhere); one per project."""
    require_role(by, iteration.project, Role.ADMIN)
    _require_completed(iteration, "the default")
    Iteration.objects.filter(project_id=iteration.project_id, is_default=True).exclude(
        pk=iteration.pk
    ).update(is_default=False)
    Iteration.objects.filter(pk=iteration.pk).update(is_default=True)
    iteration.is_default = True
    return iteration


@transaction.atomic
def rename_iteration(*, iteration: Iteration, name: str, by: AbstractBaseUser) -> Iteration:
    require_role(by, iteration.project, Role.ADMIN)
    iteration.name = _clean_name(name, "iteration name")
    Iteration.objects.filter(pk=iteration.pk).update(name=iteration.name)
    return iteration


@transaction.atomic
def set_suggested_threshold(
    *, iteration: Iteration, threshold: float, by: AbstractBaseUser
) -> Iteration:
    """Save the probability threshold chosen on the performance page for this iteration."""
    require_role(by, iteration.project, Role.ADMIN)
    _require_completed(iteration, "given a threshold")
    if not 0.0 <= threshold <= 1.0:
        raise ValidationFailed("The threshold must be between 0 and 1.")
    iteration.suggested_threshold = round(float(threshold), 4)
    Iteration.objects.filter(pk=iteration.pk).update(
        suggested_threshold=iteration.suggested_threshold
    )
    # The iterations list shows figures at this threshold without reading every score.
    remember_headline(iteration)
    return iteration


def delete_iteration(*, iteration: Iteration, by: AbstractBaseUser) -> None:
    """Delete an iteration with its snapshot, scores and stored files (iteration_files).

    Refused while published (clients may call it) and while training (its worker holds it); a
    queued one may go, so a lost message never blocks a project for good.
    """
    require_role(by, iteration.project, Role.ADMIN)
    with transaction.atomic():
        locked = Iteration.objects.select_for_update().get(pk=iteration.pk)
        if locked.is_published:
            raise LabelRuleError(
                f"{locked.name} is published as “{locked.published_name}”. "
                "Unpublish it before deleting it."
            )
        if locked.status == Iteration.Status.TRAINING:
            raise LabelRuleError(f"{locked.name} is training. Wait for it to finish.")
        names = iteration_files(locked)
        locked.delete()
    # After the commit: a failed delete leaves an orphan file, never a row without its file.
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete %s of a deleted iteration", name, exc_info=True)
