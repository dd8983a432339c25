"""What the performance and compare pages show, read from an iteration's stored scores.

Nothing is recomputed by a model here: the figures come from the out-of-fold (quick) or held-out
(advanced) probabilities stored when the iteration completed, so the page and its threshold
slider are instant. The slider's JavaScript (static/js/performance.js) applies the same rule as
`training.ml.metrics.classification_metrics`: a tag is predicted when its score >= threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.files.storage import FileSystemStorage, default_storage
from django.db.models import TextField
from django.db.models.functions import Cast
from django.urls import NoReverseMatch, reverse
from django.utils.encoding import filepath_to_uri

from training.models import Iteration, IterationScore, IterationTag

# The tagging view's URL is built in the browser from this stand-in id (one reverse, not 5,000).
_ID_PLACEHOLDER = 999999999


@dataclass
class ScoreTable:
    tags: list[IterationTag]
    y_true: np.ndarray  # (M, T) {0,1}
    scores: np.ndarray  # (M, T) probabilities
    rows: list[dict[str, Any]]  # per scored image: id, name, thumbnail url, labels, scores


def load_scores(iteration: Iteration) -> ScoreTable:
    """Every scored image of the iteration with its true labels, in one query.

    The two JSON columns come back as text and are parsed in one `json.loads` call: per-row
    decoding and per-row `storage.url` were most of the page's time at 5,000 images x 10 tags.
    """
    tags = list(iteration.tags.order_by("index"))
    records = (
        IterationScore.objects.filter(iteration=iteration)
        .order_by("iteration_image_id")
        .annotate(
            labels_text=Cast("iteration_image__labels", TextField()),
            scores_text=Cast("scores", TextField()),
        )
        .values_list(
            "iteration_image__image_id",
            "iteration_image__original_name",
            "labels_text",
            "iteration_image__is_negative",
            "iteration_image__image__thumbnail",
            "iteration_image__file_name",
            "fold",
            "scores_text",
        )
    )
    records = list(records)
    labels_all = json.loads("[" + ",".join(r[2] for r in records) + "]")
    scores_all = json.loads("[" + ",".join(r[7] for r in records) + "]")
    tag_count = len(tags)
    y_true = np.zeros((len(records), tag_count), dtype=np.float64)
    scores = np.array(scores_all, dtype=np.float64).reshape(len(records), tag_count)
    url_of = _url_builder()
    rows = []
    for i, (image_id, name, _, is_negative, thumb, file_name, fold, _) in enumerate(records):
        labels = labels_all[i]
        y_true[i, labels] = 1.0
        rows.append(
            {
                "id": image_id,
                "name": name,
                "y": labels,
                "neg": is_negative,
                "fold": fold,
                "s": scores_all[i],
                "url": url_of(thumb or file_name) if image_id else "",
            }
        )
    return ScoreTable(tags=tags, y_true=y_true, scores=scores, rows=rows)


def _url_builder() -> Callable[[str], str]:
    """`storage.url`, with local disk's fixed prefix applied directly (no per-file work)."""
    storage = default_storage
    if isinstance(storage, FileSystemStorage):
        base = storage.base_url
        return lambda name: base + filepath_to_uri(name)
    return storage.url


def figures_at(iteration: Iteration, table: ScoreTable, threshold: float) -> dict[str, Any]:
    """classification_metrics at `threshold`, with each tag's name and image count beside it."""
    from training.ml.metrics import classification_metrics

    if not table.rows:
        return {"per_tag": [], "precision": None, "recall": None, "map": None, "roc_auc": None}
    figures = classification_metrics(
        table.y_true, table.scores, threshold=threshold, multiclass=not iteration.is_multilabel
    )
    for tag, per_tag in zip(table.tags, figures["per_tag"], strict=True):
        per_tag["name"] = tag.name
        per_tag["image_count"] = tag.image_count
        # Nothing predicted (threshold 1.00, say): precision is undefined, shown as "—", not 0.
        if not per_tag["predicted"]:
            per_tag["precision"] = None
    if not any(per_tag["predicted"] for per_tag in figures["per_tag"]):
        figures["precision"] = None
    return figures


def predicted_tags(scores: np.ndarray, threshold: float, *, multiclass: bool) -> np.ndarray:
    """(M, T) bool: the tags each image is predicted to have at `threshold`.

    static/js/performance.js `predictedTags` is the same rule: multiclass predicts the best tag
    (the first of equal ones) if its score >= threshold, else nothing (Negative); multilabel
    every tag whose score >= threshold.
    """
    if not multiclass:
        return scores >= threshold
    predicted = np.zeros(scores.shape, dtype=bool)
    if scores.size:
        rows = np.arange(scores.shape[0])
        best = scores.argmax(axis=1)
        predicted[rows, best] = scores[rows, best] >= threshold
    return predicted


def mispredicted_rows(table: ScoreTable, threshold: float, *, multiclass: bool) -> np.ndarray:
    """(M,) bool: the images whose predicted tags differ from their true ones at `threshold`,
    the ones the performance page outlines in red (performance.js `mispredicted`)."""
    predicted = predicted_tags(table.scores, threshold, multiclass=multiclass)
    return (predicted != (table.y_true > 0.5)).any(axis=1)


def page_data(
    iteration: Iteration,
    table: ScoreTable,
    *,
    can_save: bool,
    save_url: str,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The JSON embedded in the performance page for the slider, charts and mispredictions.

    `threshold` is where the slider starts (the saved one unless the URL names another, as the
    editor's "back" link does). A mispredicted image's link carries the iteration and threshold
    (`mispredicted_link`), so the editor walks the same set (training.services.mispredicted).
    """
    try:
        tag_url = reverse("labeling:image-tag", args=[iteration.project_id, _ID_PLACEHOLDER])
    except NoReverseMatch:  # the tagging view is not installed: images get no link
        tag_url = ""
    return {
        **mispredicted_link(iteration),
        "multiclass": not iteration.is_multilabel,
        "threshold": iteration.suggested_threshold if threshold is None else threshold,
        "tags": [{"name": tag.name, "count": tag.image_count} for tag in table.tags],
        "images": table.rows,
        "tag_url": tag_url,
        "id_placeholder": str(_ID_PLACEHOLDER),
        "can_save": can_save,
        "save_url": save_url,
    }


def mispredicted_link(iteration: Iteration) -> dict[str, Any]:
    """What the page's script needs to link the mispredicted set: the query key naming it
    (training.services.mispredicted.QUERY_KEY), the iteration and the gallery showing them."""
    return {
        "set_key": "mispredicted",
        "iteration_id": iteration.pk,
        "gallery_url": reverse("labeling:project-detail", args=[iteration.project_id]),
    }
