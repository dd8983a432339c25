"""The order of the Predictions tab: the one ranking path of stored predictions.

The tab, the API and bench/active_learning.py all call `ranked_predictions`; "Most gain" is
`training.ml.ranking.rank_for_review` fed from the database here (see its docstring for the rule):
- candidates: the iteration's open predictions, each with its stored uncertainty and embedding
  (past MAX_CANDIDATES, a sample: `_candidates`);
- labeled images: the iteration's training-set embeddings (training.services.embeddings);
- the blend weight from the iteration's own figures: held-out accuracy above chance (mAP for
  multilabel and detection) and labels per tag (`model_signals`);
- detection: each candidate's stored box probabilities and flip disagreement (`_boxes`), whose
  doubtful boxes (training.ml.uncertainty.doubtful_boxes) are the doubt, and images predicted
  empty last (training.ml.ranking.review_settings).
Each row of a Most-gain page carries the reason it is there ("Unsure between cat and dog").

Other sorts read indexes only (predictions/models.py): "newest", and "lowest"/"highest"
probability of one tag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db.models import F, QuerySet

from labeling.models import Project
from predictions.models import Prediction, PredictionScore
from project.errors import ValidationFailed
from training.models import Iteration
from training.services.publishing import current_iteration

PAGE_SIZE = 40
# Most gain ranks at most this many open predictions: a sample beyond it (`_candidates`). k-means
# over 1,000 candidates plus the training set takes ~50 ms on this 2-core machine when quiet.
MAX_CANDIDATES = 1000
# The order of a given open set is kept this long (it only changes when the set does).
ORDER_CACHE_S = 600
# Below this uncertainty (a margin over 0.5) a row's reason says the model is fairly sure of it.
SURE_BELOW = 0.5
# From this flip disagreement on (training.ml.uncertainty.flip_disagreement) a detection row's
# reason says its boxes disagree under flip: a quarter of the box weight unmatched or far apart.
FLIP_SHOWN = 0.25
# A detection row's reason counts its boxes from this closeness to the threshold on (halfway
# from sure to the threshold: 0.25-0.75 at a threshold of 0.5).
NEAR_SHOWN = 0.5
SORTS = {
    "gain": "Most gain",
    "newest": "Newest",
    "lowest": "Lowest probability for tag",
    "highest": "Highest probability for tag",
}


@dataclass(frozen=True)
class PredictionPage:
    predictions: list[Prediction]
    has_more: bool
    page: int
    # Most gain only: why each shown prediction is there, by prediction id.
    reasons: dict[int, str] = field(default_factory=dict)
    # Open predictions of the iteration, when the sort had to count them (Most gain).
    open_count: int | None = None


@dataclass(frozen=True)
class ModelSignals:
    """What "Most gain" knows about the model that made the predictions."""

    quality: float | None  # held-out accuracy above chance in [0, 1]; None if not measured
    labels_per_tag: float


def iterations_with_predictions(project: Project) -> list[Iteration]:
    """Completed iterations, newest first (the tab's dropdown)."""
    return list(project.iterations.completed().order_by("-number"))


def default_iteration(
    project: Project, iterations: Sequence[Iteration], current: Iteration | None = None
) -> Iteration | None:
    """The iteration the tab opens on: the project's current one (its default, else its latest
    completed: training.services.publishing.current_iteration), as on every other page.

    It used to be the newest iteration with open predictions; reviewers then saw a different
    model here than in Quick test and Suggest tags. `other_open_iterations` names the ones with
    open work, and the dropdown still chooses any of `iterations`.
    """
    current = current or current_iteration(project)
    if current is not None and any(it.pk == current.pk for it in iterations):
        return current
    return iterations[0] if iterations else None


def other_open_iterations(iterations: Sequence[Iteration], shown: Iteration) -> list[Iteration]:
    """The iterations besides `shown` that have open predictions, newest first.

    One EXISTS per iteration (an index seek on prediction_newest_idx): a DISTINCT over the
    predictions would read every row (measured: ~250 ms at 100,000).
    """
    return [
        it
        for it in iterations
        if it.pk != shown.pk and Prediction.objects.open().filter(iteration_id=it.pk).exists()
    ]


def ranked_predictions(
    *,
    project: Project,
    iteration_id: int,
    sort: str = "gain",
    tag_id: int | None = None,
    page: int = 1,
    size: int = PAGE_SIZE,
) -> PredictionPage:
    """One page of the open predictions of an iteration in the chosen order."""
    if sort not in SORTS:
        raise ValidationFailed("Choose a sort: most gain, newest, or a tag's probability.")
    page = max(1, page)
    start, stop = (page - 1) * size, page * size
    open_rows = Prediction.objects.open().filter(project=project, iteration_id=iteration_id)
    gain: GainOrder | None = None
    if sort == "gain":
        iteration = Iteration.objects.filter(project=project, pk=iteration_id).first()
        if iteration is None:
            return PredictionPage([], False, page)
        # The iteration is this project's: its rows need no project filter, so every read below
        # stays on the (iteration, status, ...) indexes.
        gain = open_gain_order(
            iteration,
            Prediction.objects.open().filter(iteration_id=iteration.pk),
            detection=project.is_detection,
        )
        ids = gain.ids[start:stop]
        has_more = min(gain.total, len(gain.ids)) > stop
    elif sort == "newest":
        ids = list(open_rows.newest().values_list("pk", flat=True)[start : stop + 1])
        has_more, ids = len(ids) > size, ids[:size]
    else:
        if tag_id is None:
            raise ValidationFailed("Choose the tag to sort by.")
        order = "probability" if sort == "lowest" else "-probability"
        scores = PredictionScore.objects.filter(
            iteration_id=iteration_id, tag_id=tag_id, is_open=True
        ).order_by(order, "prediction_id" if sort == "lowest" else "-prediction_id")
        ids = list(scores.values_list("prediction_id", flat=True)[start : stop + 1])
        has_more, ids = len(ids) > size, ids[:size]
    rows = Prediction.objects.filter(pk__in=ids).select_related("image").defer("embedding")
    by_id = {row.pk: row for row in rows}
    shown = [by_id[i] for i in ids if i in by_id]
    reasons: dict[int, str] = {}
    if gain is not None:
        position = {pk: start + i for i, pk in enumerate(ids)}
        reasons = {
            row.pk: gain_reason(project, iteration, gain, position[row.pk], row) for row in shown
        }
    for row in shown:  # for the template, which cannot look a row up in `reasons`
        row.gain_reason = reasons.get(row.pk, "")
    return PredictionPage(shown, has_more, page, reasons, gain.total if gain else None)


def model_signals(iteration: Iteration) -> ModelSignals:
    """The iteration's held-out quality above chance and its labeled images per tag."""
    metrics: dict[str, Any] = iteration.metrics or {}
    tags = list(iteration.tags.values_list("image_count", flat=True))
    labels = float(np.mean(tags)) if tags else 0.0
    quality: float | None = None
    accuracy = metrics.get("accuracy")
    if accuracy is None and metrics.get("confusion"):  # iterations from before "accuracy"
        confusion = np.asarray(metrics["confusion"], dtype=np.float64)
        accuracy = float(np.trace(confusion) / confusion.sum()) if confusion.sum() else None
    if accuracy is not None and not iteration.is_multilabel and tags:
        chance = 1.0 / max(len(tags), 2)
        quality = (float(accuracy) - chance) / (1.0 - chance)
    elif metrics.get("map") is not None:
        quality = float(metrics["map"])
    if quality is not None:
        quality = float(np.clip(quality, 0.0, 1.0))
    return ModelSignals(quality=quality, labels_per_tag=labels)


@dataclass(frozen=True)
class GainOrder:
    """Every candidate of an iteration's open predictions in Most-gain order, and why."""

    ids: list[int]
    for_doubt: list[bool]
    like_it: list[int]  # unlabeled images in the pick's cluster, scaled to all open predictions
    is_covered: list[bool]  # a labeled image is in the pick's cluster
    total: int  # open predictions of the iteration
    by_density: bool = True  # picks are a cluster's most typical image (else any member)


def gain_reason(
    project: Project, iteration: Iteration, gain: GainOrder, position: int, row: Prediction
) -> str:
    return _reason(
        project,
        iteration,
        row.results or [],
        row.uncertainty,
        flip_disagreement=row.flip_disagreement,
        for_doubt=gain.for_doubt[position],
        like_it=gain.like_it[position],
        is_covered=gain.is_covered[position],
        by_density=gain.by_density,
    )


@dataclass(frozen=True)
class GainCandidates:
    """What Most gain ranks, whoever stores it: stored predictions (the tab, the API, the bench)
    and suggested tags (the gallery's "Has a suggestion" walk) both come here as this."""

    ids: list[int]  # the caller's ids (prediction ids, image ids), one per candidate
    embeddings: np.ndarray  # (N, D) stored embeddings, any width (compacted here)
    uncertainty: np.ndarray  # (N,) in [0, 1], as training.ml.uncertainty scored it
    total: int  # how many the candidates stand for (more than N when they are a sample)
    # Detection: each candidate's box probabilities and flip disagreement (None: not run
    # mirrored). Given, the doubt is its doubtful boxes (ml.uncertainty.doubtful_boxes); without
    # them a detection ranks by `uncertainty` as a classification does.
    box_probabilities: Sequence[Sequence[float]] | None = None
    flip: Sequence[float | None] | None = None


def gain_order(iteration: Iteration, candidates: GainCandidates) -> GainOrder:
    """The one Most-gain rule over candidates of `iteration`'s model: every caller's order.

    The candidates are put in one canonical order first (falling uncertainty, then falling id),
    so two callers holding the same candidates under different row orders get the same ranking
    (k-means is seeded and depends on the order of its points).
    """
    from training.ml.ranking import compact_embeddings, rank_for_review, review_settings
    from training.ml.uncertainty import doubtful_boxes
    from training.services.embeddings import training_embeddings

    if not candidates.ids:
        return GainOrder([], [], [], [], 0)
    uncertainty = np.asarray(candidates.uncertainty, dtype=np.float64)
    canonical = sorted(
        range(len(candidates.ids)), key=lambda i: (-uncertainty[i], -candidates.ids[i])
    )
    ids = [candidates.ids[i] for i in canonical]
    signals = model_signals(iteration)
    detection = candidates.box_probabilities is not None
    settings = review_settings(
        model_quality=signals.quality, labels_per_tag=signals.labels_per_tag, detection=detection
    )
    doubt, first = uncertainty[canonical], None
    if candidates.box_probabilities is not None:
        boxes = [candidates.box_probabilities[i] for i in canonical]
        flip = None if candidates.flip is None else [candidates.flip[i] for i in canonical]
        threshold = min(max(float(iteration.suggested_threshold), 0.01), 0.99)
        doubt, holds = doubtful_boxes(boxes, flip, threshold=threshold)
        first = holds if settings.objects_first else None
    # The training set's embeddings are stored compacted; compare like with like.
    embeddings = compact_embeddings(np.asarray(candidates.embeddings)[canonical])
    labeled = training_embeddings(iteration.pk)
    if labeled is not None and labeled.shape[1] != embeddings.shape[1]:
        labeled = None  # another feature space (e.g. a changed backbone): coverage unknown
    ranking = rank_for_review(
        embeddings,
        doubt,
        labeled_embeddings=labeled,
        weight=settings.weight,
        density_trust=settings.density_trust,
        k=len(ids),
        batch=PAGE_SIZE,
        seed=iteration.pk,
        one_per_cluster=settings.one_per_cluster,
        first=first,
    )
    scale = candidates.total / len(ids)
    return GainOrder(
        ids=[ids[int(i)] for i in ranking.order],
        for_doubt=[bool(v) for v in ranking.for_doubt],
        like_it=[round(int(v) * scale) for v in ranking.cluster_size],
        is_covered=[bool(v) for v in ranking.cluster_labeled],
        total=candidates.total,
        by_density=settings.density_trust >= 0.5,
    )


def open_gain_order(
    iteration: Iteration, open_rows: QuerySet[Prediction], *, detection: bool
) -> GainOrder:
    """The order of an iteration's open predictions, computed once per state of the open set
    (cached ORDER_CACHE_S seconds) by `gain_order`.

    Predictions only arrive (a higher id) or leave (promoted, dismissed), so the count and the
    highest id of the open rows name the set; the iteration's figures and training embeddings
    never change once it completed. `created` tells apart iterations that reuse an id (tests).
    """
    # Two index reads on prediction_newest_idx (iteration, status, -id): COUNT(*) and the top
    # row. One aggregate of COUNT and MAX took the planner elsewhere: 235 ms at 100,000 rows.
    total = open_rows.count()
    top = open_rows.newest().values_list("pk", flat=True).first()
    key = f"most-gain:{iteration.pk}:{iteration.created.timestamp()}:{total}:{top}:{detection}"
    cached: GainOrder | None = cache.get(key)
    if cached is not None:
        return cached
    signals = model_signals(iteration)
    from training.ml.ranking import review_settings

    weight = review_settings(
        model_quality=signals.quality, labels_per_tag=signals.labels_per_tag, detection=detection
    ).weight
    rows = _candidates(open_rows, iteration, weight, total)
    ids = [pk for pk, _ in rows]
    boxes, flip = _boxes(ids) if detection else (None, None)
    order = gain_order(
        iteration,
        GainCandidates(
            ids=ids,
            embeddings=_embeddings(ids),
            uncertainty=np.array([u for _, u in rows], dtype=np.float64),
            total=total,
            box_probabilities=boxes,
            flip=flip,
        ),
    )
    cache.set(key, order, ORDER_CACHE_S)
    return order


def _candidates(
    open_rows: QuerySet[Prediction], iteration: Iteration, weight: float, total: int
) -> list[tuple[int, float]]:
    """(id, uncertainty) of the rows Most gain ranks: all of them up to MAX_CANDIDATES, else
    the least sure share ``weight / 2`` of that many (an index range) and an even spread of the
    rest by id (a residue of the id: arrival order says nothing of content, and a scan that
    returns a thousand rows is far cheaper than turning 100,000 into Python tuples)."""
    by_doubt = open_rows.most_uncertain().values_list("pk", "uncertainty")
    if total <= MAX_CANDIDATES:
        return list(by_doubt)
    unsure = list(by_doubt[: round(weight * MAX_CANDIDATES / 2)])
    stride = math.ceil(total / (MAX_CANDIDATES - len(unsure)))
    spread = (
        open_rows.annotate(residue=F("id") % stride)
        .filter(residue=iteration.pk % stride)
        .values_list("pk", "uncertainty")
    )
    merged = dict(unsure)
    merged.update(spread)
    return sorted(merged.items(), key=lambda row: (-row[1], -row[0]))


def _embeddings(ids: list[int]) -> np.ndarray:
    """(N, D) float32 stored embeddings in the order of `ids`; zeros where none was stored."""
    stored: dict[int, bytes] = {}
    for chunk in range(0, len(ids), 500):
        part = ids[chunk : chunk + 500]
        stored.update(
            (pk, bytes(raw))
            for pk, raw in Prediction.objects.filter(pk__in=part).values_list("pk", "embedding")
        )
    return stored_vectors([stored.get(pk, b"") for pk in ids])


def _boxes(ids: list[int]) -> tuple[list[list[float]], list[float | None]]:
    """Per id (in order) its stored boxes' probabilities and its flip disagreement."""
    stored: dict[int, tuple[list[float], float | None]] = {}
    for chunk in range(0, len(ids), 500):
        rows = Prediction.objects.filter(pk__in=ids[chunk : chunk + 500]).values_list(
            "pk", "results", "flip_disagreement"
        )
        for pk, results, flip in rows:
            stored[pk] = (box_probabilities(results), flip)
    return (
        [stored.get(pk, ([], None))[0] for pk in ids],
        [stored.get(pk, ([], None))[1] for pk in ids],
    )


def box_probabilities(results: Sequence[dict[str, Any]] | None) -> list[float]:
    """Each box's probability in a detection's API results: the doubtful-box input of Most gain,
    for a stored prediction and a suggestion alike."""
    return [float(row.get("probability", 0.0)) for row in results or []]


def stored_vectors(raw: Sequence[bytes]) -> np.ndarray:
    """(N, D) float32 from stored float16 embeddings; zero rows where none (or another width)
    was stored."""
    vectors = [np.frombuffer(bytes(value), dtype="<f2") for value in raw]
    width = max((v.size for v in vectors), default=0)
    result = np.zeros((len(vectors), max(width, 1)), dtype=np.float32)
    for row, vector in enumerate(vectors):
        if vector.size == width:
            result[row, :width] = vector
    return result


def _reason(
    project: Project,
    iteration: Iteration,
    results: list[dict[str, Any]],
    uncertainty: float,
    *,
    flip_disagreement: float | None = None,
    for_doubt: bool,
    like_it: int,
    is_covered: bool,
    by_density: bool,
) -> str:
    """One line for the reviewer: why this prediction is worth a label now."""
    if not for_doubt:
        others = max(like_it - 1, 0)
        images = f"{others} other unlabeled image{'s' if others != 1 else ''} like it"
        text = f"Typical of {images}" if by_density else f"One of {images}"
        text += "" if is_covered else ", none like it labeled yet"
        if not by_density:  # the spread sample of a weak model (ml.ranking.density_trust)
            text += "; the model is near chance, so its doubt only half counts"
        return text + "."
    threshold = iteration.suggested_threshold
    ranked = sorted(results, key=lambda row: -float(row.get("probability", 0.0)))
    if uncertainty < SURE_BELOW:  # far down the page: do not call a confident answer a doubt
        if ranked and not project.is_detection and project.is_multiclass:
            top = ranked[0]
            return f"Likely “{top['tagName']}” ({float(top['probability']):.2f}); less doubtful."
        return "Every call is far from the threshold; less doubtful."
    if project.is_detection:
        return _detection_reason(ranked, threshold, flip_disagreement)
    if project.is_multiclass:
        first = ranked[0] if ranked else None
        rest = 1.0 - sum(float(row["probability"]) for row in ranked)
        second = ranked[1] if len(ranked) > 1 else None
        if first is None:
            return "The model gave no tag a probability."
        if second is None or rest > float(second["probability"]):
            return f"Unsure whether it is “{first['tagName']}” or none of the tags."
        return f"Unsure between “{first['tagName']}” and “{second['tagName']}”."
    if not ranked:
        return "The model gave no tag a probability."
    closest = min(ranked, key=lambda row: abs(float(row["probability"]) - threshold))
    return (
        f"Near the threshold for “{closest['tagName']}” "
        f"({float(closest['probability']):.2f} against {threshold:.2f})."
    )


def _detection_reason(
    ranked: list[dict[str, Any]], threshold: float, flip_disagreement: float | None
) -> str:
    """ "Boxes disagree under flip; 3 boxes near the threshold, least sure box “car” 0.41
    (threshold 0.50)." and the like: what ml.uncertainty.doubtful_boxes counted."""
    from training.ml.uncertainty import BOX_FLOOR, threshold_closeness

    flipped = flip_disagreement is not None and flip_disagreement >= FLIP_SHOWN
    if not ranked:
        if flipped:
            return "Boxes disagree under flip: the mirror image has objects this one has not."
        return "No object found: either nothing is there or the model missed it."
    box = min(ranked, key=lambda row: abs(float(row["probability"]) - threshold))
    least = (
        f"least sure box “{box['tagName']}” {float(box['probability']):.2f} "
        f"(threshold {threshold:.2f})"
    )
    probabilities = np.array([float(row["probability"]) for row in ranked])
    kept = probabilities[probabilities >= BOX_FLOOR]
    near = int((threshold_closeness(kept, threshold) >= NEAR_SHOWN).sum()) if kept.size else 0
    if near > 1:  # several doubtful boxes: the sum that ranked the image, not only its least sure
        least = f"{near} boxes near the threshold, {least}"
    return f"Boxes disagree under flip; {least}." if flipped else f"{least[0].upper()}{least[1:]}."
