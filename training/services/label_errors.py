"""Possible mislabels: confident-learning candidates from an iteration's stored out-of-fold
scores, and the reviewers' queue that accepts a suggestion or keeps the label.

Source: the latest completed quick-trained classification iteration (its scores are
out-of-fold: each image was scored by a model that never saw its label); for detection, the
latest completed iteration's held-out detections (training.ml.box_errors: a wrong tag, a missed
box, a badly placed box). Candidates are computed
on demand by training.ml.confident_learning and cached per iteration (its scores never change
once it completed); nothing is hooked into the training run.

A candidate is shown while it still applies: the image is still training data, its current label
is still the one the iteration was given (someone may have fixed it since), and no reviewer kept
that label (KeptLabel, keyed by `label_key`: "mc:<tag id>" for a multiclass image's tag, the
Negative tag's id included; "ml:<tag id>:<0|1>" for a multilabel tag's absence or presence;
"det:<tag id>:<box>" for a disputed box, "det:missed:<tag id>:<box>" for a missed one).
Accepting writes through labeling's tagging service, so the project's rules and the image's
version apply as in the tagging view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction

from labeling.access import require_role
from labeling.models import Image, ImageTag, Project, Region, Role, Tag
from labeling.services.regions import set_image_regions
from labeling.services.tagging import set_image_tags
from project.errors import BadCursor, NotFound
from project.ids import whole_number
from training.ml.box_errors import MISSED, WRONG_TAG, find_box_errors
from training.ml.confident_learning import (
    find_label_errors,
    find_multilabel_errors,
    multiclass_probabilities,
)
from training.models import Iteration, IterationScore, KeptLabel
from training.services.performance import load_scores

CACHE_S = 3600
REVIEW_ROLE = Role.REVIEWER


@dataclass(frozen=True)
class Suggestion:
    image_id: int
    label_key: str
    given: str  # "cat", "Negative", "“cat” present"
    suggested: str
    confidence: float
    margin: float
    # What accepting writes: the complete new tag set (multiclass) or one tag to add/remove.
    new_tag_id: int | None  # multiclass: the tag to set; multilabel: the tag to add or remove
    add: bool  # multilabel: add (True) or remove (False) `new_tag_id`
    is_multilabel: bool
    # The tag ids the image had at training time that must still hold for the row to apply.
    given_tag_ids: tuple[int, ...]
    # Detection: the image's boxes at training time as (tag id, left, top, width, height), which
    # must still be its boxes; the disputed one (or None for a missed box) and the model's box.
    boxes: tuple[tuple[int, float, float, float, float], ...] = ()
    disputed: tuple[int, float, float, float, float] | None = None
    detected: tuple[float, float, float, float] | None = None
    kind: str = "label"  # or training.ml.box_errors' WRONG_TAG, MISSED, MISPLACED

    @property
    def is_detection(self) -> bool:
        return self.kind != "label"


def source_iteration(project: Project) -> Iteration | None:
    """The latest completed quick classification iteration, whose scores are out-of-fold; for
    detection, the latest completed iteration (its held-out images' detections)."""
    if project.is_detection:
        return project.iterations.completed().order_by("-number").first()
    return (
        project.iterations.completed()
        .filter(training_type=Iteration.TrainingType.QUICK)
        .order_by("-number")
        .first()
    )


def iteration_suggestions(iteration: Iteration) -> list[Suggestion]:
    """Every candidate of the iteration, most likely error first (cached per iteration)."""
    key = f"loupe:mislabels:{iteration.pk}:{iteration.created.timestamp()}"
    found = cache.get(key)
    if found is None:
        found = _compute(iteration)
        cache.set(key, found, CACHE_S)
    return found


def _compute(iteration: Iteration) -> list[Suggestion]:
    if iteration.project.is_detection:
        return _detection(iteration)
    table = load_scores(iteration)
    if not table.rows or len(table.tags) < 1:
        return []
    tag_ids = [t.tag_id for t in table.tags]
    names = [t.name for t in table.tags]
    image_ids = [row["id"] for row in table.rows]
    if iteration.is_multilabel:
        return _multilabel(table.scores, table.y_true, tag_ids, names, image_ids)
    negative = Tag.objects.filter(project_id=iteration.project_id, kind=Tag.Kind.NEGATIVE).first()
    is_neg = np.array([bool(row["neg"]) for row in table.rows])
    return _multiclass(table.scores, table.y_true, is_neg, tag_ids, names, image_ids, negative)


def _multiclass(
    scores: np.ndarray,
    y_true: np.ndarray,
    is_negative: np.ndarray,
    tag_ids: list[int | None],
    names: list[str],
    image_ids: list[int | None],
    negative: Tag | None,
) -> list[Suggestion]:
    t = scores.shape[1]
    with_background = bool(is_negative.any()) and negative is not None
    probs = multiclass_probabilities(scores, with_negative=with_background)
    if with_background:
        ids, labels_names = [*tag_ids, negative.pk], [*names, "Negative"]  # type: ignore[union-attr]
    else:
        ids, labels_names = list(tag_ids), list(names)
    labeled = y_true.any(axis=1) | (is_negative if with_background else False)
    labels = np.where(y_true.any(axis=1), y_true.argmax(axis=1), t)
    rows = np.flatnonzero(labeled)
    if probs.shape[1] < 2 or rows.size == 0:
        return []
    out = []
    for c in find_label_errors(probs[rows], labels[rows]):
        row = int(rows[c.row])
        given_id, suggested_id = ids[c.given], ids[c.suggested]
        if image_ids[row] is None or given_id is None or suggested_id is None:
            continue  # the image or a tag was deleted since training
        out.append(
            Suggestion(
                image_id=int(image_ids[row]),  # type: ignore[arg-type]
                label_key=f"mc:{given_id}",
                given=labels_names[c.given],
                suggested=labels_names[c.suggested],
                confidence=c.confidence,
                margin=c.margin,
                new_tag_id=suggested_id,
                add=True,
                is_multilabel=False,
                given_tag_ids=(given_id,),
            )
        )
    return out


def _multilabel(
    scores: np.ndarray,
    y_true: np.ndarray,
    tag_ids: list[int | None],
    names: list[str],
    image_ids: list[int | None],
) -> list[Suggestion]:
    out = []
    for c in find_multilabel_errors(scores, y_true.astype(np.int64)):
        tag_id, image_id = tag_ids[c.column], image_ids[c.row]
        if tag_id is None or image_id is None:
            continue
        name = names[c.column]
        present, absent = f"“{name}”", f"no “{name}”"
        out.append(
            Suggestion(
                image_id=int(image_id),
                label_key=f"ml:{tag_id}:{c.given}",
                given=present if c.given else absent,
                suggested=present if c.suggested else absent,
                confidence=c.confidence,
                margin=c.margin,
                new_tag_id=tag_id,
                add=bool(c.suggested),
                is_multilabel=True,
                given_tag_ids=(tag_id,) if c.given else (),
            )
        )
    return out


def _rounded(box: Sequence[float]) -> tuple[float, ...]:
    # Boxes are compared at 1e-4 of the image: the snapshot and the Region rows hold the same
    # floats, but JSON round trips may differ in the last digits.
    return tuple(round(float(x), 4) for x in box)


def _detection(iteration: Iteration) -> list[Suggestion]:
    tags = list(iteration.tags.order_by("index"))
    rows = list(
        IterationScore.objects.filter(iteration=iteration)
        .order_by("iteration_image_id")
        .values_list("iteration_image__image_id", "iteration_image__boxes", "detections")
    )
    truths = [boxes or [] for _, boxes, _ in rows]
    found = find_box_errors(truths, [dets or [] for _, _, dets in rows], num_tags=len(tags))
    out = []
    for c in found:
        image_id = rows[c.row][0]
        tag_ids = [t.tag_id for t in tags]
        boxes = [(tag_ids[int(b[0])], *_rounded(b[1:5])) for b in truths[c.row]]
        if image_id is None or any(b[0] is None for b in boxes) or tag_ids[c.suggested_tag] is None:
            continue  # the image or a tag was deleted since training
        suggested_name = tags[c.suggested_tag].name
        if c.kind == MISSED:
            given, suggested = "no box here", f"a “{suggested_name}” box"
            disputed = None
            key = f"det:missed:{tag_ids[c.suggested_tag]}:" + ",".join(f"{x:.2f}" for x in c.box)
        else:
            disputed = boxes[c.box_index]
            given_name = tags[c.given_tag].name
            if c.kind == WRONG_TAG:
                given, suggested = f"a “{given_name}” box", f"“{suggested_name}”"
            else:
                given, suggested = f"a “{given_name}” box off the object", "the box moved"
            key = f"det:{disputed[0]}:" + ",".join(f"{x:.4f}" for x in disputed[1:])
        out.append(
            Suggestion(
                image_id=int(image_id),
                label_key=key[:100],
                given=given,
                suggested=suggested,
                confidence=c.confidence,
                margin=-c.confidence,
                new_tag_id=tag_ids[c.suggested_tag],
                add=True,
                is_multilabel=False,
                given_tag_ids=(),
                boxes=tuple(boxes),  # type: ignore[arg-type]
                disputed=disputed,  # type: ignore[arg-type]
                detected=tuple(_rounded(c.box)),  # type: ignore[arg-type]
                kind=c.kind,
            )
        )
    return out


def _current_boxes(image_ids: set[int]) -> dict[int, list[tuple[int, float, float, float, float]]]:
    boxes: dict[int, list[tuple[int, float, float, float, float]]] = {i: [] for i in image_ids}
    for image_id, tag_id, *box in Region.objects.filter(image_id__in=image_ids).values_list(
        "image_id", "tag_id", "left", "top", "width", "height"
    ):
        boxes[image_id].append((tag_id, *_rounded(box)))  # type: ignore[arg-type]
    return boxes


def review_queue(project: Project, user: AbstractBaseUser) -> list[Suggestion]:
    """The candidates that still apply (module docstring), most likely error first."""
    require_role(user, project, REVIEW_ROLE)
    iteration = source_iteration(project)
    if iteration is None:
        return []
    suggestions = iteration_suggestions(iteration)
    if not suggestions:
        return []
    ids = {s.image_id for s in suggestions}
    live = set(project.images.training().filter(pk__in=ids).values_list("pk", flat=True))
    current: dict[int, set[int]] = {i: set() for i in live}
    for image_id, tag_id in ImageTag.objects.filter(image_id__in=live).values_list(
        "image_id", "tag_id"
    ):
        current[image_id].add(tag_id)
    kept = set(KeptLabel.objects.filter(image_id__in=live).values_list("image_id", "label_key"))
    if project.is_detection:
        boxes = _current_boxes(live)
        return [
            s
            for s in suggestions
            if s.image_id in live
            and (s.image_id, s.label_key) not in kept
            and sorted(boxes[s.image_id]) == sorted(s.boxes)
        ]
    return [s for s in suggestions if _applies(s, current, kept)]


@dataclass(frozen=True)
class QueuePage:
    iteration_id: int | None  # the iteration whose scores found them
    count: int  # suggestions in the queue
    suggestions: list[Suggestion]
    next_cursor: str | None


def review_queue_page(
    project: Project, user: AbstractBaseUser, *, after: str | None, size: int
) -> QueuePage:
    """One keyset page of `review_queue`. The cursor is "<iteration id>:<position>" in that
    iteration's full candidate list, which never changes (the queue is that list less what was
    accepted, kept or relabeled since): rows reviewed while a client pages shift nothing. A
    cursor from another iteration (the queue was rebuilt by a newer training) is refused."""
    queue = review_queue(project, user)
    iteration = source_iteration(project)
    start = 0
    if after:
        head, _, tail = after.partition(":")
        iteration_id, position = whole_number(head), whole_number(tail)
        if iteration_id is None or position is None:
            raise BadCursor("This cursor is not one this list gave; start again.")
        if iteration is None or iteration_id != iteration.pk:
            raise BadCursor(
                "The queue was rebuilt from a newer iteration since this cursor was given; "
                "start again from the first page."
            )
        start = position
    if iteration is None or not queue:
        return QueuePage(iteration.pk if iteration else None, len(queue), [], None)
    position_of = {
        (s.image_id, s.label_key): i for i, s in enumerate(iteration_suggestions(iteration))
    }
    after_cursor = [s for s in queue if position_of[(s.image_id, s.label_key)] >= start]
    shown = after_cursor[:size]
    cursor = None
    if len(after_cursor) > size:
        last = shown[-1]
        cursor = f"{iteration.pk}:{position_of[(last.image_id, last.label_key)] + 1}"
    return QueuePage(iteration.pk, len(queue), shown, cursor)


def _applies(s: Suggestion, current: dict[int, set[int]], kept: set[tuple[int, str]]) -> bool:
    if s.image_id not in current or (s.image_id, s.label_key) in kept:
        return False
    tags = current[s.image_id]
    if s.is_multilabel:
        return (s.new_tag_id in tags) != s.add  # still as given: absent for an add, or present
    return tags == set(s.given_tag_ids)


def _find(project: Project, user: AbstractBaseUser, image_id: int, label_key: str) -> Suggestion:
    for s in review_queue(project, user):
        if s.image_id == image_id and s.label_key == label_key:
            return s
    raise NotFound("That suggestion is no longer in the queue (the label changed or was kept).")


@transaction.atomic
def accept_suggestion(
    *, project: Project, image_id: int, label_key: str, by: AbstractBaseUser
) -> Image:
    """Relabel the image as suggested, through the tagging service (its rules and version)."""
    s = _find(project, by, image_id, label_key)
    image = project.images.get(pk=image_id)
    image.project = project
    tags = {t.pk: t for t in project.tags.all()}
    if s.is_detection:
        return _accept_box(image, s, tags, by)
    if s.is_multilabel:
        current = set(image.image_tags.values_list("tag_id", flat=True))
        wanted = current | {s.new_tag_id} if s.add else current - {s.new_tag_id}
    else:
        wanted = {s.new_tag_id}
    if any(tag_id not in tags for tag_id in wanted):
        raise NotFound("The suggested tag no longer exists in this project.")
    return set_image_tags(
        image=image,
        tags=[tags[t] for t in sorted(wanted)],
        by=by,
        version=image.version,  # type: ignore[index]
    )


def _accept_box(image: Image, s: Suggestion, tags: dict[int, Tag], by: AbstractBaseUser) -> Image:
    """The image's boxes with the disputed one retagged or moved, or the missed one added,
    through labeling's region service (its rules and the image's version)."""
    boxes = list(s.boxes)
    assert s.detected is not None and s.new_tag_id is not None
    if s.kind == MISSED:
        boxes.append((s.new_tag_id, *s.detected))
    else:
        at = boxes.index(s.disputed)  # type: ignore[arg-type]
        tag_id = s.new_tag_id if s.kind == WRONG_TAG else boxes[at][0]
        coords = boxes[at][1:] if s.kind == WRONG_TAG else s.detected
        boxes[at] = (tag_id, *coords)  # type: ignore[assignment]
    if any(b[0] not in tags for b in boxes):
        raise NotFound("The suggested tag no longer exists in this project.")
    regions = [(tags[b[0]], *b[1:]) for b in boxes]
    return set_image_regions(image=image, regions=regions, by=by, version=image.version)  # type: ignore[arg-type]


@transaction.atomic
def keep_label(*, project: Project, image_id: int, label_key: str, by: AbstractBaseUser) -> None:
    """Record that a reviewer kept the label: it is not flagged again for that label."""
    s = _find(project, by, image_id, label_key)
    KeptLabel.objects.get_or_create(image_id=s.image_id, label_key=s.label_key, defaults={"by": by})
