"""A reviewer's triage of stored predictions (the order they are shown in:
predictions.services.ranking).

`open_for_review` writes the predicted labels onto the prediction images once (so the tagging view
opens pre-filled and the reviewer only fixes what is wrong); `promote_prediction` ("Save and
close") moves one into the training data with its labels, exactly once; `dismiss_predictions`
removes them from the tab without training on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.access import require_role
from labeling.models import Image, Project, Role, Tag
from labeling.services.regions import RegionSpec, set_image_regions
from labeling.services.tagging import set_image_tags
from predictions.models import Prediction, PredictionScore
from project.errors import LabelRuleError, NotFound, ValidationFailed


def _open_prediction(project: Project, image_id: int, *, lock: bool = False) -> Prediction:
    rows = Prediction.objects.filter(project=project, image_id=image_id)
    if lock:
        rows = rows.select_for_update()
    prediction = rows.select_related("image", "iteration").first()
    if prediction is None:
        raise NotFound("This image is not a stored prediction of this project.")
    prediction.image.project = project
    return prediction


def open_for_review(
    *, project: Project, image_ids: Sequence[int], by: AbstractBaseUser
) -> list[int]:
    """Pre-fill the predicted labels on the chosen open predictions; returns their image ids
    in the given order. A prediction is pre-filled once: reopening keeps the reviewer's edits."""
    require_role(by, project, Role.REVIEWER)
    wanted = list(dict.fromkeys(int(i) for i in image_ids))
    if not wanted:
        raise ValidationFailed("Select at least one prediction.")
    rows = {
        p.image_id: p
        for p in Prediction.objects.open()
        .filter(project=project, image_id__in=wanted)
        .select_related("image", "iteration")
    }
    if not rows:
        raise NotFound("None of the selected predictions is still open.")
    tags = {tag.pk: tag for tag in project.tags.all()}
    for prediction in rows.values():
        if not prediction.is_prefilled:
            _prefill(project, prediction, tags, by)
    return [image_id for image_id in wanted if image_id in rows]


def predicted_labels(project: Project, prediction: Prediction, tags: dict[int, Tag]) -> list:  # type: ignore[type-arg]
    """The labels a reviewer starts from: multiclass the top tag; multilabel every tag at or
    above the iteration's threshold; detection every box at or above it."""
    threshold = prediction.iteration.suggested_threshold
    results = [r for r in prediction.results if r.get("tagId") in tags]
    if project.is_detection:
        return [
            (tags[r["tagId"]], *(r["boundingBox"][k] for k in ("left", "top", "width", "height")))
            for r in results
            if r["probability"] >= threshold and tags[r["tagId"]].kind == Tag.Kind.REGULAR
        ]
    if project.is_multiclass:
        return [tags[results[0]["tagId"]]] if results else []
    return [tags[r["tagId"]] for r in results if r["probability"] >= threshold]


def _prefill(
    project: Project, prediction: Prediction, tags: dict[int, Tag], by: AbstractBaseUser
) -> None:
    image = prediction.image
    image.project = project
    labels = predicted_labels(project, prediction, tags)
    with transaction.atomic():
        claimed = Prediction.objects.filter(pk=prediction.pk, is_prefilled=False).update(
            is_prefilled=True
        )
        if not claimed or not labels:  # another reviewer's request pre-filled it already
            return
        if project.is_detection:
            set_image_regions(image=image, regions=labels, by=by, version=None)
        else:
            set_image_tags(image=image, tags=labels, by=by, version=None)


@dataclass(frozen=True)
class Promotion:
    prediction: Prediction
    already_done: bool  # a second "Save and close" of the same image: nothing changed


def promote_prediction(
    *,
    project: Project,
    image_id: int,
    by: AbstractBaseUser,
    tags: Sequence[Tag] | None = None,
    regions: Sequence[RegionSpec] | None = None,
) -> Promotion:
    """ "Save and close": the prediction's image becomes a training image with its current
    labels, and leaves the Predictions tab. Exactly once: the row is locked and its status is
    moved open -> promoted by a compare-and-set, so a double submit changes nothing the second
    time. An image whose content is already training data is reported, not stored twice.

    `tags` (classification) or `regions` (detection) first replace the image's labels through
    labeling's services, in the same transaction (the REST API labels and saves in one call)."""
    require_role(by, project, Role.REVIEWER)
    with transaction.atomic():
        prediction = _open_prediction(project, image_id, lock=True)
        if prediction.status == Prediction.Status.PROMOTED:
            return Promotion(prediction, already_done=True)
        if prediction.status == Prediction.Status.DISMISSED:
            raise LabelRuleError("This prediction was dismissed, so it cannot be saved.")
        image = Image.objects.get(pk=prediction.image_id)
        image.project = project
        if tags is not None:
            image = set_image_tags(image=image, tags=tags, by=by, version=None)
        if regions is not None:
            image = set_image_regions(image=image, regions=regions, by=by, version=None)
        if not project.is_detection and not image.is_tagged:
            raise LabelRuleError("Choose at least one tag before saving this image.")
        _refuse_duplicate(project, image)
        moved = Prediction.objects.filter(pk=prediction.pk, status=Prediction.Status.OPEN).update(
            status=Prediction.Status.PROMOTED, reviewed_by=by, reviewed=timezone.now()
        )
        if not moved:  # lost a race with a concurrent submit on a database without row locks
            return Promotion(prediction, already_done=True)
        try:
            with transaction.atomic():
                Image.objects.filter(pk=image.pk).update(is_training=True)
        except IntegrityError:  # the same content became training data meanwhile
            _refuse_duplicate(project, image)
            raise
        PredictionScore.objects.filter(prediction=prediction).update(is_open=False)
    prediction.status = Prediction.Status.PROMOTED
    return Promotion(prediction, already_done=False)


def _refuse_duplicate(project: Project, image: Image) -> None:
    existing = project.images.training().filter(sha256=image.sha256).exclude(pk=image.pk).first()
    if existing is not None:
        raise LabelRuleError(
            f"This image is already in the training data (image {existing.pk}). "
            "Dismiss the prediction instead.",
            duplicate_of=existing.pk,
        )


@dataclass(frozen=True)
class ReviewSummary:
    """Where a "Review selected" queue stands: what was added, dismissed, and is still open."""

    added: int
    dismissed: int
    left_open: int

    def describe(self) -> str:
        text = f"{self.added} added to training, {self.dismissed} dismissed"
        if self.left_open:
            text += f", {self.left_open} still open"
        return text + "."


def next_in_review(*, project: Project, queue: Sequence[int], after: int) -> int | None:
    """The image id of the next open prediction of the review queue after `after`, wrapping
    round to ones skipped earlier; None when every prediction in it has been decided."""
    ids = [int(i) for i in queue]
    open_ids = set(
        Prediction.objects.open()
        .filter(project=project, image_id__in=ids)
        .values_list("image_id", flat=True)
    )
    at = ids.index(after) + 1 if after in ids else 0
    for image_id in ids[at:] + ids[:at]:
        if image_id in open_ids and image_id != after:
            return image_id
    return None


def review_summary(*, project: Project, queue: Sequence[int]) -> ReviewSummary:
    """Count the queue's predictions by outcome, from the database: a reload or a second tab
    never makes the summary disagree with what happened."""
    statuses = list(
        Prediction.objects.filter(
            project=project, image_id__in=[int(i) for i in queue]
        ).values_list("status", flat=True)
    )
    return ReviewSummary(
        added=statuses.count(Prediction.Status.PROMOTED),
        dismissed=statuses.count(Prediction.Status.DISMISSED),
        left_open=statuses.count(Prediction.Status.OPEN),
    )


def dismiss_predictions(*, project: Project, image_ids: Sequence[int], by: AbstractBaseUser) -> int:
    """Remove open predictions from the tab without training on them; returns how many."""
    require_role(by, project, Role.REVIEWER)
    ids = [int(i) for i in image_ids]
    if not ids:
        raise ValidationFailed("Select at least one prediction.")
    with transaction.atomic():
        rows = Prediction.objects.open().filter(project=project, image_id__in=ids)
        prediction_ids = list(rows.values_list("pk", flat=True))
        count = Prediction.objects.filter(pk__in=prediction_ids, status="open").update(
            status=Prediction.Status.DISMISSED, reviewed_by=by, reviewed=timezone.now()
        )
        PredictionScore.objects.filter(prediction_id__in=prediction_ids).update(is_open=False)
    return count
