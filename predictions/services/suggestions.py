"""Suggested tags ("smart labeler"): the current iteration's guesses for untagged images.

A worker task (`predictions.suggest_tags`) runs the project's current iteration (its default,
else its latest completed: training.services.publishing.current_iteration) over its
untagged training images in batches and stores one Suggestion per image: for multiclass the top
tag, for multilabel every tag at or above the iteration's threshold (the top tag if none is),
for detection the boxes at or above it. The tagging view shows them; one key accepts them
through labeling's own tagging services, so every rule and the version check still apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage

from labeling.access import require_role
from labeling.models import Image, Project, Role, Tag
from labeling.services.regions import set_image_regions
from labeling.services.tagging import set_image_tags
from predictions.models import Suggestion
from predictions.services.predict import CheckedImage, run_model, target_for
from project.errors import LabelRuleError, LoupeError
from project.queue import enqueue
from training.models import Iteration
from training.services.publishing import current_iteration

logger = logging.getLogger(__name__)

SUGGEST_BATCH = 200  # images per task run; the task re-queues itself for the rest


def request_suggestions(*, project: Project, by: AbstractBaseUser) -> Iteration:
    """Queue the suggestion task for the project's current iteration (reviewers and admins)."""
    require_role(by, project, Role.REVIEWER)
    iteration = current_iteration(project, with_model=True)
    if iteration is None:
        raise LabelRuleError(
            "Suggestions come from a trained iteration, and this project has none yet. "
            "Train one first."
        )
    enqueue("predictions.suggest_tags", project.pk, queue="predict")
    return iteration


def suggest_for_untagged(
    project_id: int, *, limit: int = SUGGEST_BATCH, on_image: Callable[[], None] = lambda: None
) -> tuple[int, bool]:
    """Store suggestions for up to `limit` untagged training images without a current one.

    Returns (how many were stored, whether images remain). Idempotent: an image that already
    has a suggestion from this iteration is skipped, so a redelivered task repeats nothing.
    """
    project = Project.objects.get(pk=project_id)
    iteration = current_iteration(project, with_model=True)
    if iteration is None:
        return 0, False
    target = target_for(project, iteration)
    images = list(
        project.images.training()
        .untagged()
        .exclude(suggestion__iteration=iteration)
        .order_by("-pk")[: limit + 1]
    )
    remaining = len(images) > limit
    stored = 0
    for image in images[:limit]:
        try:
            with default_storage.open(image.file.name, "rb") as handle:
                data = handle.read()
            checked = CheckedImage(data, image.sha256, image.format, image.width, image.height)
            outcome = run_model(target, checked)
        except (OSError, LoupeError) as err:
            logger.warning("No suggestion for image %s: %s", image.pk, err)
            continue
        tags, boxes = _suggested(project, iteration, outcome.results)
        if not tags and not boxes:
            continue
        Suggestion.objects.update_or_create(
            image=image, defaults={"iteration": iteration, "tags": tags, "boxes": boxes}
        )
        stored += 1
        on_image()
    return stored, remaining


def _suggested(project: Project, iteration: Iteration, results: list[dict]) -> tuple[list, list]:  # type: ignore[type-arg]
    threshold = iteration.suggested_threshold
    results = [r for r in results if r.get("tagId") is not None]
    if project.is_detection:
        return [], [r for r in results if r["probability"] >= threshold]
    if project.is_multiclass or not results:
        return results[:1], []
    above = [r for r in results if r["probability"] >= threshold]
    return above or results[:1], []


def suggestion_for(image: Image) -> Suggestion | None:
    """The stored suggestion of an untagged training image, if any."""
    if not image.is_training or image.is_tagged:
        return None
    return Suggestion.objects.filter(image=image).first()


def accept_suggestion(*, image: Image, by: AbstractBaseUser, version: int | None) -> Image:
    """Apply the suggested tags (or boxes) to the image through the tagging services."""
    project = image.project
    require_role(by, project, Role.ANNOTATOR)
    suggestion = Suggestion.objects.filter(image=image).first()
    if suggestion is None:
        raise LabelRuleError("There are no suggested tags for this image.")
    tags = {tag.pk: tag for tag in project.tags.all()}
    if project.is_detection:
        regions = [
            (tags[b["tagId"]], *(b["boundingBox"][k] for k in ("left", "top", "width", "height")))
            for b in suggestion.boxes
            if b["tagId"] in tags and tags[b["tagId"]].kind == Tag.Kind.REGULAR
        ]
        image = set_image_regions(image=image, regions=regions, by=by, version=version)
    else:
        chosen = [tags[t["tagId"]] for t in suggestion.tags if t["tagId"] in tags]
        if not chosen:
            raise LabelRuleError("The suggested tags no longer exist in this project.")
        image = set_image_tags(image=image, tags=chosen, by=by, version=version)
    suggestion.delete()
    return image
