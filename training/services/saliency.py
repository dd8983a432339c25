"""Where the model looked: Grad-CAM overlays and per-tag context reliance, computed by a worker.

Invariant: every job is one JSON status file in Django's default storage (media may be S3; no
local paths), rewritten whole by `project.storage.replace_file` so a poller never finds it
missing: `saliency/<iteration id>-<created>/<key>.json` beside its overlay `<key>.png`, and
`context.json` there for an iteration's context reliance (see `folder`). A job is queued (by
task name) only when no file exists or the last one failed and the user asks again; the worker
ends every job "done" or "failed" with a reason. A worker that dies leaves "queued"/"running":
past STALE_AFTER_S a read reports it failed ("did not finish"), and asking again re-queues it.
A broker outage fails the job at once (`enqueue`'s on_error). An iteration's results never go
stale: its model and stored images never change once it completed.

Keys: `i<image id>` for a project image (a training image or a stored prediction), `u<sha256>`
for a quick-test upload, whose bytes are kept in the folder's `uploads/<sha256>` so
a worker on another machine can read them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.files.storage import default_storage
from django.urls import reverse

from labeling.access import UserLike, access_image
from labeling.models import Image, Project
from project.errors import NotFound
from project.ids import parse_optional_id
from project.queue import enqueue
from project.storage import replace_file
from training.ml.decode import load_rgb
from training.ml.errors import DatasetCorrupt
from training.models import Iteration

if TYPE_CHECKING:  # torch: the worker's job only, never imported by the pages (web process)
    from training.ml.detection_saliency import DetectorSaliency
    from training.ml.saliency import SaliencyModel

logger = logging.getLogger(__name__)

TASK = "training.explain_prediction"
TIME_LIMIT_S = 300
STALE_AFTER_S = TIME_LIMIT_S + 120
MAX_UPLOAD_BYTES = 20 * 1024 * 1024

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class Explained:
    """What a page shows for one (iteration, image): the job's state and, once done, the
    overlay's URL and the explained prediction."""

    iteration: Iteration
    key: str
    status: str  # "" (never asked), queued, running, done, failed
    message: str = ""
    tag_name: str = ""
    probability: float = 0.0
    overlay_url: str = ""
    box: tuple[float, ...] = ()  # a detector's explained box (left, top, width, height)

    @property
    def is_active(self) -> bool:
        return self.status in (QUEUED, RUNNING)


# --- Lookups (the access funnel first) -----------------------------------------------------


def explainable_iteration(project: Project, iteration_id: object) -> Iteration:
    """The project's completed iteration with a model file; NotFound for a bad or foreign id.
    Classifiers and detectors both: a detector's map explains its top box."""
    pk = parse_optional_id(iteration_id)
    iteration = (
        project.iterations.completed().exclude(artifact="").filter(pk=pk).first() if pk else None
    )
    if iteration is None:
        raise NotFound("This iteration does not exist in this project or has no model.")
    return iteration


def image_key(user: UserLike, project: Project, image_id: object) -> str:
    """The key of a project image the user may open (access_image: 404 / 403)."""
    image = access_image(user, project, image_id)  # type: ignore[arg-type]
    return f"i{image.pk}"


def upload_key(iteration: Iteration, upload: object) -> str:
    """The key of a quick-test upload kept for `iteration`; NotFound if there is none."""
    text = str(upload or "")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise NotFound("This tested image is no longer available; test it again.")
    if not default_storage.exists(_upload_name(iteration, text)):
        raise NotFound("This tested image is no longer available; test it again.")
    return f"u{text}"


def keep_upload(*, iteration_id: int, data: bytes) -> str:
    """Keep a quick-test image's bytes for a later "Where the model looked"; its sha256."""
    digest = hashlib.sha256(data).hexdigest()
    if len(data) <= MAX_UPLOAD_BYTES:
        iteration = Iteration.objects.filter(pk=iteration_id).first()
        if iteration is None:
            return digest
        name = _upload_name(iteration, digest)
        if not default_storage.exists(name):
            replace_file(name, data)
    return digest


# --- Requests from pages -----------------------------------------------------------------


def saliency_state(iteration: Iteration, key: str) -> Explained:
    """The job's state as stored (stale active jobs read as failed; see module)."""
    status = read_json(_status_name(iteration, key))
    if status is None:
        return Explained(iteration=iteration, key=key, status="")
    state = str(status.get("status", ""))
    if state in (QUEUED, RUNNING) and time.time() - float(status.get("at", 0)) > STALE_AFTER_S:
        return Explained(
            iteration, key, FAILED, "It did not finish (its worker stopped). Try again."
        )
    overlay = ""
    if state == DONE:
        query = f"upload={key[1:]}" if key.startswith("u") else f"image={key[1:]}"
        overlay = reverse("training:where-looked-overlay", args=[iteration.project_id])
        overlay += f"?iteration={iteration.pk}&{query}"
    return Explained(
        iteration=iteration,
        key=key,
        status=state,
        message=str(status.get("message", "")),
        tag_name=str(status.get("tag", "")),
        probability=float(status.get("probability", 0.0)),
        overlay_url=overlay,
        box=tuple(float(v) for v in status.get("box") or ()),
    )


def request_saliency(iteration: Iteration, key: str) -> Explained:
    """Queue the job unless it is done or running; a failed one is queued again."""
    current = saliency_state(iteration, key)
    if current.status in (DONE, QUEUED, RUNNING):  # a stale job reads as failed
        return current
    _write_status(iteration, key, QUEUED)

    def lost(err: Exception) -> None:
        _write_status(
            iteration, key, FAILED, message="The job queue is unavailable. Try again later."
        )

    enqueue(TASK, iteration.pk, key, queue="predict", on_error=lost)
    return saliency_state(iteration, key)


def open_overlay(iteration: Iteration, key: str) -> io.BufferedIOBase:
    name = _overlay_name(iteration, key)
    if not default_storage.exists(name):
        raise NotFound("This heat map has not been computed.")
    return default_storage.open(name, "rb")  # type: ignore[no-any-return]


# --- The worker's side ---------------------------------------------------------------------


def explain_prediction(iteration_id: int, key: str) -> str:
    """Compute and store one overlay; returns the final status. Never raises for bad input."""
    try:
        iteration = Iteration.objects.select_related("project").get(pk=iteration_id)
    except Iteration.DoesNotExist:
        return FAILED  # deleted with its files; nobody polls it any more
    status = read_json(_status_name(iteration, key)) or {}
    if status.get("status") == DONE:
        return DONE
    _write_status(iteration, key, RUNNING)
    try:
        tag, probability, *box = _explain(iteration, key)
    except _JobFailed as err:
        _write_status(iteration, key, FAILED, message=err.message)
        return FAILED
    except Exception:  # a bug or an outage: the job still ends, with a reason
        logger.exception("Grad-CAM of %s for iteration %s failed", key, iteration_id)
        _write_status(
            iteration, key, FAILED, message="The heat map could not be computed (an error)."
        )
        return FAILED
    extra = {"box": box[0]} if box else {}
    _write_status(iteration, key, DONE, tag=tag, probability=probability, **extra)
    return DONE


class _JobFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _explain(iteration: Iteration, key: str) -> tuple[Any, ...]:
    """(tag name, probability) of the explained prediction, and a detector's box after them."""
    if not iteration.artifact:
        raise _JobFailed("Heat maps need an iteration with a model file.")
    from training.ml.saliency import model_crop, overlay_png, whole_image_overlay_png

    picture = _open_picture(iteration, key)
    if iteration.project.is_detection:
        found = detector_model(iteration).explain(picture)
        if found is None:
            raise _JobFailed("The model finds no box in this image: there is no box to explain.")
        png = whole_image_overlay_png(found.heat, *picture.size, box=found.box)
        replace_file(_overlay_name(iteration, key), png)
        return _tag_name(iteration, found.tag_index), found.score, list(found.box)
    model = classifier_model(iteration)
    saliency = model.explain(model_crop(picture, model.input_size))
    replace_file(_overlay_name(iteration, key), overlay_png(saliency.heat, *picture.size))
    return _tag_name(iteration, saliency.tag_index), saliency.score


def _open_picture(iteration: Iteration, key: str) -> Any:
    if key.startswith("i") and key[1:].isdigit():
        image = Image.objects.filter(pk=int(key[1:]), project_id=iteration.project_id).first()
        if image is None or not image.file:
            raise _JobFailed("The image was deleted.")
        name, label = image.file.name, str(image)
    elif key.startswith("u") and len(key) == 65:
        name, label = _upload_name(iteration, key[1:]), "the tested image"
    else:
        raise _JobFailed("This is not an image of the project.")
    try:
        with default_storage.open(name, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, OSError):
        raise _JobFailed("The image file is missing from storage.") from None
    try:
        return load_rgb(data, key=label)
    except DatasetCorrupt:
        raise _JobFailed("The image could not be read as a picture.") from None


def _tag_name(iteration: Iteration, index: int) -> str:
    tag = iteration.tags.filter(index=index).first()
    return tag.name if tag is not None else f"tag {index}"


# Built models per worker process (a backbone in eager PyTorch is ~20 MB): the next heat map of
# the same iteration skips loading and building.
_MODELS: OrderedDict[tuple[int, float, str], SaliencyModel | DetectorSaliency] = OrderedDict()
_MODELS_LOCK = threading.Lock()
_MODELS_KEPT = 2


def classifier_model(iteration: Iteration) -> SaliencyModel:
    """The iteration's classifier split for Grad-CAM, built once per worker process."""
    from training.ml.artifact import load_artifact
    from training.ml.saliency import SaliencyModel, saliency_model

    def build(data: bytes) -> SaliencyModel:
        return saliency_model(load_artifact(io.BytesIO(data)))

    model = _cached_model(iteration, build)
    assert isinstance(model, SaliencyModel)
    return model


def detector_model(iteration: Iteration) -> DetectorSaliency:
    """The iteration's detector for box Grad-CAM, built once per worker process."""
    from training.ml.detection import load_detector_artifact
    from training.ml.detection_saliency import DetectorSaliency

    def build(data: bytes) -> DetectorSaliency:
        return DetectorSaliency(load_detector_artifact(io.BytesIO(data)))

    model = _cached_model(iteration, build)
    assert isinstance(model, DetectorSaliency)
    return model


def _cached_model(
    iteration: Iteration, build: Callable[[bytes], SaliencyModel | DetectorSaliency]
) -> SaliencyModel | DetectorSaliency:
    # The creation time too: a reused id (see `folder`) must not get the old model.
    cache_key = (iteration.pk, iteration.created.timestamp(), iteration.artifact.name)
    with _MODELS_LOCK:
        if cache_key in _MODELS:
            _MODELS.move_to_end(cache_key)
            return _MODELS[cache_key]
    with default_storage.open(iteration.artifact.name, "rb") as handle:
        model = build(handle.read())
    with _MODELS_LOCK:
        _MODELS[cache_key] = model
        while len(_MODELS) > _MODELS_KEPT:
            _MODELS.popitem(last=False)
    return model


# --- Storage -------------------------------------------------------------------------------


def folder(iteration: Iteration) -> str:
    """The iteration's folder of maps (Iteration.saliency_folder)."""
    return iteration.saliency_folder


def _status_name(iteration: Iteration, key: str) -> str:
    return f"{folder(iteration)}/{key}.json"


def _overlay_name(iteration: Iteration, key: str) -> str:
    return f"{folder(iteration)}/{key}.png"


def _upload_name(iteration: Iteration, digest: str) -> str:
    return f"{folder(iteration)}/uploads/{digest}"


def read_json(name: str) -> dict[str, Any] | None:
    """A job's status file, or None when it is missing or unreadable."""
    try:
        with default_storage.open(name, "rb") as handle:
            value = json.loads(handle.read().decode())
    except (FileNotFoundError, OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_status(iteration: Iteration, key: str, status: str, **fields: Any) -> None:
    payload = {"status": status, "at": time.time(), **fields}
    replace_file(_status_name(iteration, key), json.dumps(payload).encode())
