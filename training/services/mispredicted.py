"""The images an iteration mispredicted at a threshold, as a set the labeling pages walk.

A performance page outlines in red the images its iteration got wrong at the slider's threshold
(computed in the browser from the embedded scores). Clicking one opens the tagging view or box
editor with `?mispredicted=<iteration id>&threshold=0.37` (detection adds `&overlap=0.50`);
labeling asks its image-set registry (labeling.image_sets) for that key, and this module answers:
the same set, computed here from the same stored scores by the same rule
(`performance.mispredicted_rows`, `detection_performance.detection_mispredicted_rows`), in the
page's order, with what the iteration predicted for each image and the way back to the page.
The gallery's "mispredicted by iteration N" filter is the same set.

The set depends only on an iteration's stored scores, which never change once it completed, so
it is cached per (iteration, thresholds): key presses in the editor do not re-read 5,000 rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import urlencode

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.urls import reverse

from labeling.image_sets import ImagePrediction, ImageSet, PredictedBox, PredictedTag
from labeling.models import Project
from project.errors import NotFound
from project.ids import parse_optional_id
from training.models import Iteration, IterationScore
from training.services.detection_performance import (
    DEFAULT_OVERLAP,
    OVERLAP_MAX,
    OVERLAP_MIN,
)
from training.services.performance import predicted_tags
from training.services.pipelines import pipeline_for

QUERY_KEY = "mispredicted"
CACHE_S = 600
NEGATIVE = "Negative"  # what no tag at all is called on the performance page


def parse_fraction(
    value: str | None, *, default: float, low: float = 0.0, high: float = 1.0
) -> float:
    """A threshold from a query string, or `default` for a missing or bad one (a stale link
    shows the page at its saved threshold rather than an error)."""
    try:
        number = float(value) if value not in (None, "") else default
    except ValueError:
        return default
    return number if math.isfinite(number) and low <= number <= high else default


def mispredicted_image_ids(
    iteration: Iteration, threshold: float, overlap: float = DEFAULT_OVERLAP
) -> list[int]:
    """The ids of the images `iteration` mispredicted at the thresholds, in the page's order
    (images deleted since training are left out). `overlap` counts for detection only."""
    project = iteration.project
    # The creation time too: a test database (or a restored backup) may reuse an id.
    key = f"loupe:mispredicted:{iteration.pk}:{iteration.created.timestamp()}:{threshold!r}"
    if project.is_detection:
        key += f":{overlap!r}"
    ids = cache.get(key)
    if ids is None:
        ids = _compute(iteration, threshold, overlap)
        cache.set(key, ids, CACHE_S)
    return ids


def _compute(iteration: Iteration, threshold: float, overlap: float) -> list[int]:
    return pipeline_for(iteration.project).mispredicted_image_ids(iteration, threshold, overlap)


def mispredicted_set(
    user: AbstractBaseUser, project: Project, query: Mapping[str, str]
) -> ImageSet | None:
    """labeling.image_sets' provider for `?mispredicted=<iteration id>&threshold=…`."""
    iteration_id = parse_optional_id(query.get(QUERY_KEY))
    iteration = (
        project.iterations.completed().filter(pk=iteration_id).first() if iteration_id else None
    )
    if iteration is None:
        raise NotFound("That iteration is not a completed iteration of this project.")
    iteration.project = project
    threshold = parse_fraction(query.get("threshold"), default=iteration.suggested_threshold)
    params = {QUERY_KEY: str(iteration.pk), "threshold": f"{threshold:g}"}
    label = f"Mispredicted by {iteration.name} at threshold {threshold:.2f}"
    overlap = DEFAULT_OVERLAP
    if project.is_detection:
        overlap = parse_fraction(
            query.get("overlap"), default=DEFAULT_OVERLAP, low=OVERLAP_MIN, high=OVERLAP_MAX
        )
        params["overlap"] = f"{overlap:g}"
        label += f", overlap {overlap:.2f}"
    page = reverse("training:iteration-performance", args=[project.pk, iteration.pk])
    back_query = {k: v for k, v in params.items() if k != QUERY_KEY}
    return ImageSet(
        label=label,
        image_ids=mispredicted_image_ids(iteration, threshold, overlap),
        params=params,
        back_url=f"{page}?{urlencode(back_query)}",
        back_label=f"{iteration.name} performance",
        prediction=lambda image_id: image_prediction(iteration, image_id, threshold, overlap),
    )


def image_prediction(
    iteration: Iteration, image_id: int, threshold: float, overlap: float = DEFAULT_OVERLAP
) -> ImagePrediction | None:
    """What `iteration` predicted for one of its scored images (out-of-fold or held out)."""
    score = (
        IterationScore.objects.filter(iteration=iteration, iteration_image__image_id=image_id)
        .select_related("iteration_image")
        .first()
    )
    if score is None:
        return None
    names = list(iteration.tags.order_by("index").values_list("name", flat=True))
    snapshot = score.iteration_image
    if iteration.project.is_detection:
        return _detection_prediction(iteration, score, names, threshold, overlap)
    true = set(snapshot.labels)
    predicted = predicted_tags(
        np.asarray([score.scores], dtype=np.float64),
        threshold,
        multiclass=not iteration.is_multilabel,
    )[0]
    tags = sorted(
        (
            PredictedTag(name, float(p), bool(predicted[j]), j in true)
            for j, (name, p) in enumerate(zip(names, score.scores, strict=True))
        ),
        key=lambda t: -t.probability,
    )
    guessed = [t.name for t in tags if t.is_predicted] or [NEGATIVE]
    true_names = [names[j] for j in sorted(true)] or [NEGATIVE]
    return ImagePrediction(
        source=iteration.name,
        threshold=threshold,
        summary=f"predicted: {', '.join(guessed)} · true: {', '.join(true_names)}",
        true_labels=true_names,
        tags=tags,
    )


def _detection_prediction(
    iteration: Iteration,
    score: IterationScore,
    names: list[str],
    threshold: float,
    overlap: float,
) -> ImagePrediction:
    from training.ml.detection_metrics import precision_recall_at

    truths = [tuple(box) for box in score.iteration_image.boxes]
    detections = [tuple(det) for det in score.detections or []]
    counts = precision_recall_at(
        [truths],  # type: ignore[list-item]
        [detections],  # type: ignore[list-item]
        num_tags=len(names),
        probability_threshold=threshold,
        overlap_threshold=overlap,
    )
    missed = sum(c.false_negatives for c in counts)
    wrong = sum(c.false_positives for c in counts)
    boxes = [
        PredictedBox(names[int(d[0])], float(d[1]), *(float(x) for x in d[2:6]))
        for d in sorted(detections, key=lambda d: -d[1])
        if d[1] >= threshold
    ]
    return ImagePrediction(
        source=iteration.name,
        threshold=threshold,
        summary=f"{missed} missed · {wrong} wrong",
        true_labels=sorted({names[int(b[0])] for b in truths}) or ["no objects"],
        boxes=boxes,
    )
