"""Detection figures and the detection performance page's data, from stored held-out detections.

The page's two sliders (probability and overlap) recompute per-tag precision and recall in the
browser (static/js/performance-detection.js) from the ground truth and detections embedded here;
that script applies the same greedy rule as `training.ml.detection_metrics.precision_recall_at`:
per image and tag, detections with probability >= the threshold, highest first, each take the
unmatched true box of their tag with the highest IoU >= the overlap threshold.

Only numpy is needed (no torch): the web process imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import TextField
from django.db.models.functions import Cast
from django.urls import NoReverseMatch, reverse

from training.ml.detection_metrics import (
    Detection,
    GroundTruthBox,
    evaluate_detections,
    precision_recall_at,
)
from training.models import Iteration, IterationScore, IterationTag
from training.services.performance import _ID_PLACEHOLDER, _url_builder, mispredicted_link

# The overlap (IoU) a detection needs to count as finding a true box, before the user moves the
# overlap slider: 0.5, Custom Vision's and PASCAL VOC's convention.
DEFAULT_OVERLAP = 0.5
OVERLAP_MIN, OVERLAP_MAX = 0.1, 0.9


@dataclass
class DetectionTable:
    tags: list[IterationTag]
    ground_truth: list[list[GroundTruthBox]]  # per held-out image
    detections: list[list[Detection]]  # per held-out image, highest probability first
    rows: list[dict[str, Any]]  # per held-out image: id, name, url, gt, dets


def detection_figures(
    ground_truth: Sequence[Sequence[GroundTruthBox]],
    detections: Sequence[Sequence[Detection]],
    *,
    tag_names: Sequence[str],
    probability_threshold: float,
    overlap_threshold: float = DEFAULT_OVERLAP,
) -> dict[str, Any]:
    """Per-tag AP@0.5, AP@[.5:.95], precision and recall at the two thresholds, and the means.

    `map` is mAP@0.5 (Custom Vision's headline figure, shown on the iterations list) and
    `map_50_95` COCO's mAP@[.5:.95]. Overall precision and recall pool every tag's counts.
    A tag with no held-out box has AP None (left out of the means, as COCOeval does).
    """
    num_tags = len(tag_names)
    ap = evaluate_detections(ground_truth, detections, num_tags=num_tags)
    counts = precision_recall_at(
        ground_truth,
        detections,
        num_tags=num_tags,
        probability_threshold=probability_threshold,
        overlap_threshold=overlap_threshold,
    )
    per_tag = []
    for index, name in enumerate(tag_names):
        c = counts[index]
        per_tag.append(
            {
                "name": name,
                "precision": c.precision,
                "recall": c.recall,
                "ap": ap.ap50[index],
                "ap50": ap.ap50[index],
                "ap_50_95": ap.ap[index],
                "true_positives": c.true_positives,
                "false_positives": c.false_positives,
                "false_negatives": c.false_negatives,
                "holdout_boxes": c.true_positives + c.false_negatives,
            }
        )
    tp = sum(c.true_positives for c in counts)
    fp = sum(c.false_positives for c in counts)
    fn = sum(c.false_negatives for c in counts)
    return {
        "kind": "detection",
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "map": ap.map50,
        "map50": ap.map50,
        "map_50_95": ap.map,
        "probability_threshold": probability_threshold,
        "overlap_threshold": overlap_threshold,
        "per_tag": per_tag,
    }


def load_detection_table(iteration: Iteration) -> DetectionTable:
    """Every held-out image of a detection iteration with its true boxes and detections.

    One query; the JSON columns come back as text and are parsed in one `json.loads` each, as
    the classification page does.
    """
    tags = list(iteration.tags.order_by("index"))
    records = list(
        IterationScore.objects.filter(iteration=iteration)
        .order_by("iteration_image_id")
        .annotate(
            boxes_text=Cast("iteration_image__boxes", TextField()),
            detections_text=Cast("detections", TextField()),
        )
        .values_list(
            "iteration_image__image_id",
            "iteration_image__original_name",
            "iteration_image__image__thumbnail",
            "iteration_image__file_name",
            "boxes_text",
            "detections_text",
        )
    )
    boxes_all = json.loads("[" + ",".join(r[4] for r in records) + "]")
    detections_all = json.loads("[" + ",".join(r[5] for r in records) + "]")
    url_of = _url_builder()
    ground_truth: list[list[GroundTruthBox]] = []
    detections: list[list[Detection]] = []
    rows = []
    for i, (image_id, name, thumb, file_name, _, _) in enumerate(records):
        gt = [tuple(box) for box in boxes_all[i]]
        dets = [tuple(det) for det in detections_all[i]]
        ground_truth.append(gt)  # type: ignore[arg-type]
        detections.append(dets)  # type: ignore[arg-type]
        rows.append(
            {
                "id": image_id,
                "name": name,
                # The thumbnail keeps the image's aspect ratio, so normalised boxes overlay it.
                "url": url_of(thumb or file_name) if image_id else "",
                "gt": boxes_all[i],
                "dets": detections_all[i],
            }
        )
    return DetectionTable(tags=tags, ground_truth=ground_truth, detections=detections, rows=rows)


def detection_mispredicted_rows(
    table: DetectionTable, probability_threshold: float, overlap_threshold: float
) -> list[bool]:
    """Per held-out image: a missed or a wrong box at the two thresholds, the images the
    detection performance page outlines (performance-detection.js `figures().wrongImages`)."""
    num_tags = len(table.tags)
    wrong = []
    for gts, dets in zip(table.ground_truth, table.detections, strict=True):
        counts = precision_recall_at(
            [gts],
            [dets],
            num_tags=num_tags,
            probability_threshold=probability_threshold,
            overlap_threshold=overlap_threshold,
        )
        wrong.append(any(c.false_positives or c.false_negatives for c in counts))
    return wrong


def detection_figures_at(
    iteration: Iteration,
    table: DetectionTable,
    probability_threshold: float,
    overlap_threshold: float = DEFAULT_OVERLAP,
) -> dict[str, Any]:
    """The page's first figures (before a slider moves), with each tag's box counts beside."""
    names = [tag.name for tag in table.tags]
    if not table.rows:
        return {"per_tag": [], "precision": None, "recall": None, "map": None}
    figures = detection_figures(
        table.ground_truth,
        table.detections,
        tag_names=names,
        probability_threshold=probability_threshold,
        overlap_threshold=overlap_threshold,
    )
    # How many boxes the threshold keeps: with none, the page shows precision as "—", not 0.
    figures["kept"] = sum(t["true_positives"] + t["false_positives"] for t in figures["per_tag"])
    stored = {row["name"]: row for row in (iteration.metrics or {}).get("per_tag", [])}
    for tag, per_tag in zip(table.tags, figures["per_tag"], strict=True):
        per_tag["boxes"] = stored.get(tag.name, {}).get("boxes")
        per_tag["image_count"] = tag.image_count
    return figures


def detection_page_data(
    iteration: Iteration,
    table: DetectionTable,
    *,
    can_save: bool,
    save_url: str,
    threshold: float | None = None,
    overlap: float = DEFAULT_OVERLAP,
) -> dict[str, Any]:
    """The JSON embedded in the detection performance page for the sliders and the image grid;
    the sliders start at `threshold` (default: the saved one) and `overlap`."""
    try:
        boxes_url = reverse("labeling:image-boxes", args=[iteration.project_id, _ID_PLACEHOLDER])
    except NoReverseMatch:  # the box editor is not installed: images get no link
        boxes_url = ""
    return {
        **mispredicted_link(iteration),
        "threshold": iteration.suggested_threshold if threshold is None else threshold,
        "overlap": overlap,
        "tags": [{"name": tag.name, "count": tag.image_count} for tag in table.tags],
        "images": table.rows,
        "boxes_url": boxes_url,
        "id_placeholder": str(_ID_PLACEHOLDER),
        "can_save": can_save,
        "save_url": save_url,
    }
