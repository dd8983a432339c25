"""Suggested tags ("smart labeler"): the current iteration's guesses for untagged images.

A worker task (`predictions.suggest_tags`) runs the project's current iteration (its default,
else its latest completed: training.services.publishing.current_iteration) over its
untagged training images in batches and stores one Suggestion per image: for multiclass the top
tag, for multilabel every tag at or above the iteration's threshold (the top tag if none is),
for detection the boxes at or above it. The tagging view shows them; one key accepts them
through labeling's own tagging services, so every rule and the version check still apply.

The gallery shows them too, through labeling.gallery_extensions (predictions/gallery.py): a
badge with the confidence on each thumbnail (low ones marked), a "Has a suggestion" filter,
the run's progress (`suggestion_progress`, polled while the task runs) and "accept all at or
above a confidence" (`accept_suggestions_above`, reviewers and admins, one image at a time
through the same path as one Accept).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from labeling.access import require_role
from labeling.models import Image, ImageQuerySet, Project, Role, Tag
from labeling.services.regions import set_image_regions
from labeling.services.tagging import set_image_tags
from predictions.models import Suggestion, SuggestionRun
from predictions.services.predict import (
    CheckedImage,
    PredictionOutcome,
    Target,
    run_model,
    target_for,
)
from predictions.services.ranking import (
    ORDER_CACHE_S,
    GainCandidates,
    box_probabilities,
    gain_order,
    stored_vectors,
)
from project.errors import LabelRuleError, LoupeError, ValidationFailed
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
    now = timezone.now()
    SuggestionRun.objects.update_or_create(
        project=project,
        defaults={"iteration": iteration, "started": now, "updated": now, "finished": None},
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
    target = replace(target_for(project, iteration), check_flip=True)  # stored: ranked
    images = list(
        project.images.training()
        .untagged()
        .exclude(suggestion__iteration=iteration)
        .order_by("-pk")[: limit + 1]
    )
    remaining = len(images) > limit
    stored = 0
    for image in images[:limit]:
        if _suggest_one(project, iteration, target, image) is not None:
            stored += 1
            on_image()
    return stored, remaining


def _suggest_one(
    project: Project, iteration: Iteration, target: Target, image: Image
) -> PredictionOutcome | None:
    """Run the iteration on one stored image and keep its suggestion (if it has one); the
    model's whole outcome, or None when the image could not be read or run."""
    try:
        with default_storage.open(image.file.name, "rb") as handle:
            data = handle.read()
        checked = CheckedImage(data, image.sha256, image.format, image.width, image.height)
        outcome = run_model(target, checked)
    except (OSError, LoupeError) as err:
        logger.warning("No suggestion for image %s: %s", image.pk, err)
        return None
    tags, boxes = _suggested(project, iteration, outcome.results)
    if tags or boxes:
        from training.ml.ranking import compact_embeddings

        embedding = np.asarray(outcome.embedding, dtype=np.float32).reshape(1, -1)
        compact = compact_embeddings(embedding)[0] if embedding.size else embedding[0]
        every_box = box_probabilities(outcome.results) if project.is_detection else []
        # A new row rather than an update: a new suggestion has a higher id, which is how the
        # Most-gain order of the waiting ones notices it (`suggestion_gain_order`).
        with transaction.atomic():
            Suggestion.objects.filter(image=image).delete()
            Suggestion.objects.create(
                image=image,
                iteration=iteration,
                tags=tags,
                boxes=boxes,
                uncertainty=outcome.uncertainty,
                embedding=compact.astype("<f2").tobytes(),
                box_probabilities=every_box,
                flip_disagreement=outcome.flip_disagreement,
            )
    return outcome


def suggest_for_images(
    *, project: Project, iteration: Iteration, image_ids: Sequence[int], by: AbstractBaseUser
) -> list[tuple[Image, PredictionOutcome]]:
    """Suggest tags (or boxes) for these untagged training images now, with `iteration`
    (Custom Vision's suggest_tags_and_regions). Reviewers and admins, as "Suggest tags" is.

    Each suggestion is stored as the worker's are, so the tagging view and the gallery show it;
    returned with the model's whole outcome (every tag's probability, the uncertainty). Images
    that are tagged, not training data or not in the project are skipped.
    """
    require_role(by, project, Role.REVIEWER)
    if not iteration.is_completed or not iteration.artifact or iteration.project_id != project.pk:
        raise LabelRuleError(f"{iteration} has no trained model to suggest with.")
    target = replace(target_for(project, iteration), check_flip=True)
    images = project.images.training().untagged().filter(pk__in=list(image_ids)).order_by("pk")
    results = []
    for image in images:
        outcome = _suggest_one(project, iteration, target, image)
        if outcome is not None:
            results.append((image, outcome))
    return results


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
    return _apply(suggestion, image=image, tags=tags, by=by, version=version)


def _apply(
    suggestion: Suggestion,
    *,
    image: Image,
    tags: dict[int, Tag],
    by: AbstractBaseUser,
    version: int | None,
) -> Image:
    """Label the image as suggested through labeling's services (their rules, their version
    check), then drop the suggestion: it has become the image's labels."""
    project = image.project
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


# --- Confidence, the gallery's view of suggestions, accepting many at once ----------------------

# Below even odds a guess is marked "low" whatever the iteration's threshold: the model itself
# thinks it more likely wrong than right.
LOW_CONFIDENCE = 0.5


def suggestion_confidence(suggestion: Suggestion) -> float:
    """How sure the model is of the whole suggestion: its least sure tag (or box), 0..1.

    The weakest part, not the best: accepting a suggestion takes all of it, so "accept all
    above 0.9" must mean every tag or box it adds was at least 0.9.
    """
    rows = suggestion.boxes if suggestion.boxes else suggestion.tags
    return min((float(row["probability"]) for row in rows), default=0.0)


def is_low_confidence(suggestion: Suggestion) -> bool:
    """Below the iteration's own threshold (a multiclass top tag, a multilabel fallback tag) or
    below even odds."""
    threshold = max(suggestion.iteration.suggested_threshold, LOW_CONFIDENCE)
    return suggestion_confidence(suggestion) < threshold


def open_suggestions(project: Project) -> QuerySet[Suggestion]:
    """The suggestions still waiting: on the project's untagged training images."""
    return Suggestion.objects.filter(
        image__project=project, image__is_training=True, image__is_tagged=False
    )


def has_suggestion(images: ImageQuerySet) -> ImageQuerySet:
    """The gallery filter "Has a suggestion": untagged images with a suggestion waiting."""
    return images.untagged().filter(suggestion__isnull=False)


def suggestion_gain_order(project: Project) -> list[int]:
    """Image ids of the waiting suggestions in Most-gain order: the gallery's "Has a
    suggestion" filter and the tagging view's walk over it (predictions/gallery.py).

    The order is predictions.services.ranking.gain_order, the Predictions tab's own rule, over
    the suggestions of the latest run's iteration (their stored uncertainty and compact
    embedding; for detection, every box's probability and the flip disagreement, as the tab
    ranks stored predictions); suggestions from an older model follow, newest first (the
    gallery's default).
    Cached by the newest suggestion of that iteration, not by how many wait: accepting one
    keeps the order, so the walk goes on from where it was; a new suggestion reorders.
    """
    run = SuggestionRun.objects.filter(project=project).select_related("iteration").first()
    if run is None:
        return []
    waiting = open_suggestions(project).filter(iteration=run.iteration)
    newest = waiting.aggregate(newest=Max("pk"))["newest"]
    iteration = run.iteration
    key = f"suggestion-gain:{project.pk}:{iteration.pk}:{iteration.created.timestamp()}:{newest}"
    cached: list[int] | None = cache.get(key)
    if cached is not None:
        return cached
    fields = ("image_id", "uncertainty", "embedding", "boxes")
    rows = list(waiting.values(*fields, "box_probabilities", "flip_disagreement"))
    detection = project.is_detection
    order = gain_order(
        iteration,
        GainCandidates(
            ids=[row["image_id"] for row in rows],
            embeddings=stored_vectors([row["embedding"] for row in rows]),
            uncertainty=np.array([row["uncertainty"] for row in rows], dtype=np.float64),
            total=len(rows),
            # Suggestions stored before every box's probability was kept rank by the boxes
            # they suggest (those at or above the threshold).
            box_probabilities=[
                row["box_probabilities"] or box_probabilities(row["boxes"]) for row in rows
            ]
            if detection
            else None,
            flip=[row["flip_disagreement"] for row in rows] if detection else None,
        ),
    )
    cache.set(key, order.ids, ORDER_CACHE_S)
    return order.ids


@dataclass(frozen=True)
class AcceptReport:
    accepted: int
    skipped: int  # changed meanwhile (version conflict) or refused by a labeling rule

    def describe(self) -> str:
        text = f"Accepted {self.accepted} suggestion{'s' if self.accepted != 1 else ''}."
        if self.skipped:
            text += (
                f" {self.skipped} skipped: the image changed meanwhile or its suggested tags"
                " no longer apply."
            )
        return text


def accept_suggestions_above(
    *, project: Project, min_confidence: float, by: AbstractBaseUser
) -> AcceptReport:
    """Accept every waiting suggestion whose confidence is at least `min_confidence` (0..1).

    Reviewers and admins, as suggesting is: it labels many images at once. Each image goes
    through the same path as one Accept (labeling's services, with the version read here), in
    its own transaction: an image someone tagged meanwhile is skipped, never overwritten, and
    one refusal does not undo the others.
    """
    require_role(by, project, Role.REVIEWER)
    if not 0.0 <= min_confidence <= 1.0:
        raise ValidationFailed("The confidence is a number from 0 to 1.")
    tags = {tag.pk: tag for tag in project.tags.all()}
    suggestions = open_suggestions(project).select_related("image", "image__project")
    accepted = skipped = 0
    for suggestion in suggestions.order_by("-image_id").iterator(chunk_size=500):
        if suggestion_confidence(suggestion) < min_confidence:
            continue
        image = suggestion.image
        try:
            _apply(suggestion, image=image, tags=tags, by=by, version=image.version)
        except LoupeError as err:
            logger.info("Suggestion for image %s not accepted: %s", image.pk, err.code)
            skipped += 1
        else:
            accepted += 1
    return AcceptReport(accepted=accepted, skipped=skipped)


@dataclass(frozen=True)
class SuggestionProgress:
    """What the gallery's suggestion line says; every number is counted, none estimated."""

    run: SuggestionRun | None
    waiting: int  # untagged training images with a suggestion
    without: int  # untagged training images without one (from the run's iteration, if any)
    is_running: bool
    is_stalled: bool  # a run whose worker has not stored anything for STALLED_AFTER


# A batch of SUGGEST_BATCH images has 900 s (the task's time limit): past that without a
# stored batch, the worker is gone or stuck.
STALLED_AFTER = timedelta(seconds=960)


def suggestion_progress(project: Project) -> SuggestionProgress:
    run = SuggestionRun.objects.filter(project=project).select_related("iteration").first()
    # "Without" counts against the run's iteration: a suggestion from an older model is
    # replaced by this run, so it is still to do. Both numbers in one query.
    has_current = Q(suggestion__iteration=run.iteration) if run else Q(suggestion__isnull=False)
    counts = (
        project.images.training()
        .untagged()
        .aggregate(
            waiting=Count("pk", filter=Q(suggestion__isnull=False)),
            without=Count("pk", filter=~has_current),
        )
    )
    waiting, without = counts["waiting"], counts["without"]
    unfinished = run is not None and run.finished is None
    stalled = unfinished and timezone.now() - run.updated > STALLED_AFTER  # type: ignore[union-attr]
    return SuggestionProgress(
        run=run,
        waiting=waiting,
        without=without,
        is_running=unfinished and not stalled,
        is_stalled=stalled,
    )


def record_suggestion_batch(project_id: int, *, stored: int, remaining: bool) -> None:
    """The task's bookkeeping after each batch: progress moved, and whether the run ends."""
    now = timezone.now()
    ends = not (remaining and stored)  # the task re-queues itself only for more of the same
    SuggestionRun.objects.filter(project_id=project_id).update(
        updated=now, finished=now if ends else None
    )
