"""An iteration's figures and per-image results at any thresholds (the REST API's performance).

The performance page computes both in the browser from the stored scores as its sliders move;
these are the same figures computed on the server by the same functions (`figures_at`,
`detection_figures_at`), for a threshold the caller names.

Per image: for every scored image (out-of-fold or held out) its true labels, what the
iteration predicted with each probability, and whether it is mispredicted at the thresholds,
by the same rules the page and the mispredicted set use (`performance.predicted_tags`,
`mispredicted_rows`, `detection_performance.detection_mispredicted_rows`). Images deleted
since training are left out, as the mispredicted set leaves them out. Newest image first, as
the gallery lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from project.errors import LabelRuleError
from training.models import Iteration, IterationTag
from training.services.detection_performance import (
    DEFAULT_OVERLAP,
    detection_figures_at,
    detection_mispredicted_rows,
    load_detection_table,
)
from training.services.performance import (
    figures_at,
    load_scores,
    mispredicted_rows,
    predicted_tags,
)

BOX_KEYS = ("left", "top", "width", "height")


@dataclass(frozen=True)
class ImageResult:
    image_id: int
    name: str
    is_mispredicted: bool
    # Classification: {"tag_id", "name"}; detection: the same with left, top, width, height.
    truth: list[dict[str, Any]]
    # Classification: every tag {"tag_id", "name", "probability", "is_predicted"}, highest
    # first; detection: the boxes at or above the threshold with their probability.
    predictions: list[dict[str, Any]]
    fold: int | None = None  # classification: the cross-validation fold, -1 held out
    counts: dict[str, int] = field(default_factory=dict)  # detection: missed, wrong


def require_scores(iteration: Iteration) -> None:
    """Figures exist once an iteration completed (its scores are stored then)."""
    if not iteration.is_completed:
        raise LabelRuleError(
            f"{iteration.name} is {iteration.get_status_display().lower()}: its performance "
            "is known once it has completed."
        )


def figures_at_thresholds(
    iteration: Iteration, threshold: float, overlap: float = DEFAULT_OVERLAP
) -> dict[str, Any]:
    """Overall and per-tag figures at `threshold` (and `overlap`, for detection)."""
    require_scores(iteration)
    if iteration.project.is_detection:
        table = load_detection_table(iteration)
        return detection_figures_at(iteration, table, threshold, overlap)
    return figures_at(iteration, load_scores(iteration), threshold)


def image_results(
    iteration: Iteration, threshold: float, overlap: float = DEFAULT_OVERLAP
) -> list[ImageResult]:
    """Every scored image's result at `threshold` (and `overlap`, for detection)."""
    require_scores(iteration)
    tags = list(iteration.tags.order_by("index"))
    if iteration.project.is_detection:
        results = _detection_results(iteration, tags, threshold, overlap)
    else:
        results = _classification_results(iteration, tags, threshold)
    return sorted(results, key=lambda result: -result.image_id)


def _tag(tags: list[IterationTag], index: int) -> dict[str, Any]:
    return {"tag_id": tags[index].tag_id, "name": tags[index].name}


def _classification_results(
    iteration: Iteration, tags: list[IterationTag], threshold: float
) -> list[ImageResult]:
    table = load_scores(iteration)
    multiclass = not iteration.is_multilabel
    predicted = predicted_tags(table.scores, threshold, multiclass=multiclass)
    wrong = mispredicted_rows(table, threshold, multiclass=multiclass)
    results = []
    for i, row in enumerate(table.rows):
        if not row["id"]:
            continue
        guesses = [
            {**_tag(tags, j), "probability": float(p), "is_predicted": bool(predicted[i, j])}
            for j, p in enumerate(row["s"])
        ]
        results.append(
            ImageResult(
                image_id=row["id"],
                name=row["name"],
                is_mispredicted=bool(wrong[i]),
                truth=[_tag(tags, j) for j in sorted(row["y"])],
                predictions=sorted(guesses, key=lambda g: -g["probability"]),
                fold=row["fold"],
            )
        )
    return results


def _detection_results(
    iteration: Iteration, tags: list[IterationTag], threshold: float, overlap: float
) -> list[ImageResult]:
    from training.ml.detection_metrics import precision_recall_at

    table = load_detection_table(iteration)
    wrong = detection_mispredicted_rows(table, threshold, overlap)
    results = []
    for i, row in enumerate(table.rows):
        if not row["id"]:
            continue
        counts = precision_recall_at(
            [table.ground_truth[i]],
            [table.detections[i]],
            num_tags=len(tags),
            probability_threshold=threshold,
            overlap_threshold=overlap,
        )
        kept = sorted((d for d in row["dets"] if d[1] >= threshold), key=lambda d: -d[1])
        results.append(
            ImageResult(
                image_id=row["id"],
                name=row["name"],
                is_mispredicted=wrong[i],
                truth=[
                    {**_tag(tags, int(box[0])), **dict(zip(BOX_KEYS, box[1:5], strict=True))}
                    for box in row["gt"]
                ],
                predictions=[
                    {
                        **_tag(tags, int(det[0])),
                        "probability": float(det[1]),
                        **dict(zip(BOX_KEYS, det[2:6], strict=True)),
                    }
                    for det in kept
                ],
                counts={
                    "missed": sum(c.false_negatives for c in counts),
                    "wrong": sum(c.false_positives for c in counts),
                },
            )
        )
    return results
