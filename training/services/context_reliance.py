"""Per-tag context reliance of an iteration (training.ml.context_reliance), computed by a worker.

Invariant: one JSON file per iteration, `context.json` in its saliency folder in default
storage, rewritten whole (replace_file); queued by task name only when none exists or the last
failed; the worker ends it "done" or "failed" with a reason; past CONTEXT_STALE_AFTER_S an
active file reads as failed and asking again re-queues it (see training.services.saliency).

Images: up to PER_TAG of each tag's images from the iteration's own snapshot (IterationImage,
opened through storage by file name), the held-out ones first for an advanced or detection
iteration (those the model never trained on), in id order so a rerun measures the same images.
Classification masks the hottest quarter of the tag's Grad-CAM map; detection masks the
labelled boxes and scores a tag by its best box.
"""

from __future__ import annotations

import io
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from django.core.files.storage import default_storage
from PIL import Image

from labeling.models import Project
from project.errors import NotFound
from project.ids import parse_optional_id
from project.queue import enqueue
from project.storage import replace_file
from training.ml.decode import load_rgb
from training.ml.errors import DatasetCorrupt
from training.models import Iteration, IterationImage
from training.services.saliency import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    classifier_model,
    folder,
    read_json,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from training.ml.context_reliance import TagReliance

TASK = "training.measure_context_reliance"
TIME_LIMIT_S = 1200
STALE_AFTER_S = TIME_LIMIT_S + 120
PER_TAG = 12  # 3 forward passes each: ~36 per tag, a minute per 10 tags on a CPU worker
MAX_SIDE_PX = 448  # detection images are scored at the detector's own inference size anyway


def context_name(iteration: Iteration) -> str:
    return f"{folder(iteration)}/context.json"


def reliance_iteration(project: Project, iteration_id: object) -> Iteration:
    """The project's completed iteration with a model file, else NotFound."""
    pk = parse_optional_id(iteration_id)
    iteration = (
        project.iterations.completed().exclude(artifact="").filter(pk=pk).first() if pk else None
    )
    if iteration is None:
        raise NotFound("This iteration does not exist in this project or has no model.")
    return iteration


def context_state(iteration: Iteration) -> dict[str, Any]:
    """{"status": ""|queued|running|done|failed, "message", "tags": [...]} as stored."""
    state = read_json(context_name(iteration)) or {"status": ""}
    active = state.get("status") in (QUEUED, RUNNING)
    if active and time.time() - float(state.get("at", 0)) > STALE_AFTER_S:
        state = {"status": FAILED, "message": "It did not finish (its worker stopped). Try again."}
    return state


def request_context_reliance(iteration: Iteration) -> dict[str, Any]:
    """Queue the measurement unless it is done or under way; a failed one runs again."""
    state = context_state(iteration)
    if state.get("status") in (DONE, QUEUED, RUNNING):
        return state
    _write(iteration, QUEUED)

    def lost(err: Exception) -> None:
        _write(iteration, FAILED, message="The job queue is unavailable. Try again later.")

    enqueue(TASK, iteration.pk, queue="predict", on_error=lost)
    return context_state(iteration)


def measure_iteration(iteration_id: int) -> str:
    """The worker's side: measure, store, return the final status. Never raises."""
    iteration = Iteration.objects.select_related("project").filter(pk=iteration_id).first()
    if iteration is None:
        return FAILED
    if (read_json(context_name(iteration)) or {}).get("status") == DONE:
        return DONE
    _write(iteration, RUNNING)
    try:
        figures, names = _measure(iteration)
    except Exception:  # the job still ends, with a reason
        logger.exception("Context reliance of iteration %s failed", iteration_id)
        _write(iteration, FAILED, message="Context reliance could not be measured (an error).")
        return FAILED
    if not figures:
        _write(iteration, FAILED, message="No readable image of this iteration had a region.")
        return FAILED
    rows = {figure.tag_index: _row(figure, names) for figure in figures}
    # Every tag gets a line: one with no measurable image says so instead of vanishing.
    table = [rows.get(index) or {"tag": name, "images": 0} for index, name in sorted(names.items())]
    _write(iteration, DONE, tags=table)
    return DONE


def _measure(iteration: Iteration) -> tuple[list[TagReliance], dict[int, str]]:
    # torch: the worker's job only, never imported by the pages (the web process).
    from training.ml.context_reliance import measure_context_reliance
    from training.ml.saliency import model_crop, top_region

    names = {tag.index: tag.name for tag in iteration.tags.all()}
    rows = list(iteration.images.filter(is_negative=False).select_related("score"))
    # Held-out images first: those the model never trained on (advanced, detection).
    rows.sort(key=lambda row: (getattr(_score(row), "fold", 0) != -1, row.pk))
    if iteration.project.is_detection:
        return _measure_detection(iteration, rows, names), names
    model = classifier_model(iteration)
    pixels, masks, tags = [], [], []
    for index in sorted(names):
        for row in [r for r in rows if index in r.labels][:PER_TAG]:
            picture = _picture(row)
            if picture is None:
                continue
            crop = model_crop(picture, model.input_size)
            heat = model.explain(crop, tag_index=index).heat
            pixels.append(crop)
            masks.append(top_region(heat, model.input_size))
            tags.append(index)
    figures = measure_context_reliance(
        lambda batch: model.probabilities(np.stack(batch)),
        pixels,
        masks,
        tags,
        multilabel=model.multilabel,
        fill=_fill(model.mean),
    )
    return figures, names


def _measure_detection(
    iteration: Iteration, rows: list[IterationImage], names: dict[int, str]
) -> list[TagReliance]:
    from training.ml.context_reliance import box_mask, measure_context_reliance
    from training.ml.detection import DetectorPredictor, load_detector_artifact
    from training.ml.detection_saliency import best_box_scores

    with default_storage.open(iteration.artifact.name, "rb") as handle:
        artifact = load_detector_artifact(io.BytesIO(handle.read()))
    predictor = DetectorPredictor(artifact)

    def score(batch: list[np.ndarray]) -> np.ndarray:
        found = predictor.predict([Image.fromarray(pixels) for pixels in batch])
        return best_box_scores(found, artifact.num_tags)

    pixels, masks, tags = [], [], []
    for index in sorted(names):
        chosen = [r for r in rows if any(int(box[0]) == index for box in r.boxes)][:PER_TAG]
        for row in chosen:
            picture = _picture(row)
            if picture is None:
                continue
            picture.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX))
            array = np.asarray(picture.convert("RGB"), dtype=np.uint8)
            boxes = [box[1:5] for box in row.boxes if int(box[0]) == index]
            pixels.append(array)
            masks.append(box_mask(boxes, array.shape[0], array.shape[1]))
            tags.append(index)
    return measure_context_reliance(score, pixels, masks, tags, multilabel=True)


def _score(row: IterationImage) -> Any:
    try:
        return row.score
    except IterationImage.score.RelatedObjectDoesNotExist:  # type: ignore[attr-defined]
        return None


def _picture(row: IterationImage) -> Any:
    try:
        with default_storage.open(row.file_name, "rb") as handle:
            return load_rgb(handle.read(), key=row.original_name or row.sha256)
    except (FileNotFoundError, OSError, DatasetCorrupt):
        return None  # deleted or unreadable since training: measure the others


def _fill(mean: tuple[float, float, float]) -> tuple[int, int, int]:
    """The backbone's mean colour: zero after normalisation, the most neutral input."""
    return (round(mean[0] * 255), round(mean[1] * 255), round(mean[2] * 255))


def _row(figure: TagReliance, names: dict[int, str]) -> dict[str, Any]:
    return {
        "tag": names.get(figure.tag_index, f"tag {figure.tag_index}"),
        "images": figure.images,
        "score": round(figure.score, 4),
        "without_object": round(figure.score_without_object, 4),
        "without_surroundings": round(figure.score_without_surroundings, 4),
        "object_drop": round(figure.object_drop, 4),
        "surroundings_drop": round(figure.surroundings_drop, 4),
        "object_rise": round(max(0.0, -figure.object_drop), 4),
        "surroundings_rise": round(max(0.0, -figure.surroundings_drop), 4),
        "predicted": figure.predicted,
        "survives": round(figure.survives_without_object, 4),
        "flagged": figure.is_background_suspect,
    }


def _write(iteration: Iteration, status: str, **fields: Any) -> None:
    payload = {"status": status, "at": time.time(), **fields}
    replace_file(context_name(iteration), json.dumps(payload).encode())
