"""Predicting one image with a published iteration, and storing the result for triage.

The request path is split so the API can run the model off the database thread:
`resolve_target` (key, project, publish name: indexed queries), `predict_bytes` (no database:
`check_image`, i.e. size then labeling's ingest checks of the header, one validator for uploads
and predictions; then `run_model`, whose one decode both feeds the model and rejects damaged
pixels, on the process-wide model cache), `store_prediction` (file, Image row with
source=prediction and is_training=False, Prediction and its per-tag scores).

Uncertainty is computed here, once, with the ranking core's rules
(training.ml.uncertainty), so the Predictions tab only reads an indexed column. For detection
outcomes that are stored it includes the model's disagreement with itself under a horizontal
flip (`Target.check_flip`: one more forward pass, which the no-store path does not pay).
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image as PILImage

from labeling.models import Image, Project
from labeling.services.ingest import (
    DECODED_BYTES_PER_PIXEL,
    SUPPORTED_FORMATS,
    FileRejected,
    corrupt_rejection,
    decode_budget,
    inspect_header,
)
from labeling.services.thumbnails import enqueue_thumbnails_after_commit
from predictions.models import Prediction, PredictionScore
from predictions.services.keys import authenticate_prediction_key
from project.errors import Forbidden, LoupeError, NotFound
from project.ids import parse_optional_id
from training.models import Iteration

if TYPE_CHECKING:
    from predictions.model_cache import ModelOutput

logger = logging.getLogger(__name__)

CLASSIFY, DETECT = "classify", "detect"


class BadImage(LoupeError):
    """The body is not an image the model can read (Custom Vision: BadRequestImageFormat)."""

    code = "BadRequestImageFormat"
    http_status = 400


class ImageTooLarge(LoupeError):
    code = "BadRequestImageSizeBytes"
    http_status = 413


class ImageTooManyPixels(LoupeError):
    """More pixels than one prediction may decode (LOUPE_MAX_PREDICTION_PIXELS)."""

    code = "BadRequestImageDimensions"
    http_status = 413


class WrongModelKind(LoupeError):
    code = "BadRequestWrongModelKind"
    http_status = 400


@dataclass(frozen=True)
class TargetTag:
    index: int
    tag_id: int | None  # None when the tag was deleted after training
    name: str


@dataclass(frozen=True)
class Target:
    """What one prediction request runs: a published (or, for the quick test, any completed)
    iteration of a project, with its tags in the model's column order."""

    project_id: int
    is_detection: bool
    is_multilabel: bool
    iteration_id: int
    artifact_name: str
    threshold: float
    tags: tuple[TargetTag, ...]
    # Detection: also run the mirror image for Most gain's flip disagreement. Only where the
    # outcome is stored (stored predictions, suggestions): it costs a second forward pass that
    # a no-store answer has no use for (measured: bench/prediction_api.py --detection-flip).
    check_flip: bool = False

    @property
    def cache_key(self) -> tuple[int, str]:
        return (self.iteration_id, self.artifact_name)


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class PredictionOutcome:
    """The API's answer and the ranking columns for one image."""

    results: list[dict[str, Any]]  # sorted by probability, highest first
    probabilities: np.ndarray  # (T,) per tag, model order
    uncertainty: float
    embedding: np.ndarray  # (D,) float32
    # Detection with Target.check_flip: training.ml.uncertainty.flip_disagreement, in [0, 1].
    flip_disagreement: float | None = None


def resolve_target(
    *, project_id: int | None, publish_name: str, secret: str | None, kind: str, store: bool = True
) -> Target:
    """Check the key, then find the iteration published under `publish_name`.

    The key comes first: a missing, wrong or revoked key is Unauthorized (401) whether or not
    the project exists, so the API tells no one without a key which project ids exist (an
    account key storing below the reviewer role: Forbidden, 403). With a live key: unknown
    publish name: NotFound (404); `kind` that does not match the project (classify on a
    detection project): WrongModelKind (400).
    """
    # An id past the ids' range (or None: not an id at all) has no key either: the same 401.
    pk = parse_optional_id(project_id)
    authenticate_prediction_key(secret if pk else None, pk or 0, store=store)
    project = Project.objects.filter(pk=pk).only("pk", "kind").first()
    if project is None:  # deleted since the key was checked
        raise NotFound("This project does not exist.", code="NotFoundProject")
    iteration = (
        Iteration.objects.completed()
        .filter(project_id=project.pk, published_name=publish_name)
        .exclude(artifact="")
        .first()
    )
    if iteration is None:
        raise NotFound(f"No iteration of this project is published as “{publish_name}”.")
    if (kind == DETECT) != project.is_detection:
        wanted = "detect" if project.is_detection else "classify"
        raise WrongModelKind(
            f"This is a {project.get_kind_display().lower()} project; call its {wanted} "
            "endpoint instead."
        )
    return replace(target_for(project, iteration), check_flip=store and project.is_detection)


def target_for(project: Project, iteration: Iteration) -> Target:
    """The Target of a completed iteration (the quick test uses it for unpublished ones)."""
    if not iteration.is_completed or not iteration.artifact:
        raise NotFound(f"{iteration} has no trained model.")
    rows = iteration.tags.order_by("index").values_list("index", "tag_id", "tag__name", "name")
    tags = tuple(TargetTag(index, tag_id, current or name) for index, tag_id, current, name in rows)
    return Target(
        project_id=project.pk,
        is_detection=project.is_detection,
        is_multilabel=iteration.is_multilabel,
        iteration_id=iteration.pk,
        artifact_name=iteration.artifact.name,
        threshold=float(iteration.suggested_threshold),
        tags=tags,
    )


def check_image(data: bytes) -> CheckedImage:
    """Size first (413), then labeling's ingest checks of the header (400 with their reason).

    The pixels are checked by the decode in run_model, which must come before anything is
    stored (predict_bytes keeps the two together).
    """
    max_bytes = settings.LOUPE_MAX_PREDICTION_BYTES
    if len(data) > max_bytes:
        raise too_large(len(data))
    if not data:
        raise BadImage(
            "The request carried no image: send the file as multipart field "
            "“imageData” or as an application/octet-stream body.",
            reason="empty",
        )
    try:
        inspection = inspect_header(data)
    except FileRejected as rejection:
        raise BadImage(rejection.message, reason=rejection.code) from None
    return CheckedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=inspection.format,
        width=inspection.width,
        height=inspection.height,
    )


def too_large(size: int) -> ImageTooLarge:
    """The 413 for a body of `size` bytes."""
    max_bytes = settings.LOUPE_MAX_PREDICTION_BYTES
    return ImageTooLarge(
        f"The image is {size / 1_000_000:.1f} MB; the prediction API takes at most "
        f"{max_bytes / 1_000_000:.1f} MB per image.",
        max_bytes=max_bytes,
    )


def predict_bytes(target: Target, data: bytes) -> tuple[CheckedImage, PredictionOutcome]:
    """check_image then run_model: one image from request bytes to scores. No database."""
    image = check_image(data)
    return image, run_model(target, image)


def run_model(target: Target, image: CheckedImage) -> PredictionOutcome:
    """Decode, run the (cached) model and score the uncertainty. No database access.

    Bytes whose pixels do not decode are a BadImage (reason "corrupt", ingest's message).
    """
    from training.ml.decode import load_rgb
    from training.ml.errors import DatasetCorrupt

    model = _model(target)
    # Classification decodes a JPEG at the smallest DCT scale that keeps the backbone's input
    # size, as training's embedding pipeline does (training.ml.features): same pixels, a
    # fraction of the decode time. The detector sees the whole picture at its own size.
    draft = None if target.is_detection else model.input_size
    pixels = _decoded_pixels(image, draft)
    if pixels > settings.LOUPE_MAX_PREDICTION_PIXELS:
        raise too_many_pixels(image)
    # The decoded picture lives until the model has run: hold its bytes in the process's
    # decode budget that long, so concurrent large images take turns instead of piling up.
    # Twice Pillow's bytes a pixel: the decoded file and, at most, one full-size RGB copy
    # (conversion from RGBA/P/L, or an EXIF rotation) alive together inside load_rgb.
    with decode_budget(pixels * 2 * DECODED_BYTES_PER_PIXEL):
        try:
            picture = load_rgb(image.data, key=image.sha256, draft_size=draft)
        except DatasetCorrupt:  # passed the header checks, yet the pixels would not decode
            rejection = corrupt_rejection()
            raise BadImage(rejection.message, reason=rejection.code) from None
        output = model.run(picture, mirror=target.is_detection and target.check_flip)
        del picture
    return score_output(target, output)


def _decoded_pixels(image: CheckedImage, draft_size: int | None) -> int:
    """The pixels decoding `image` holds: a JPEG's reduced-scale size when it is drafted."""
    pixels = image.width * image.height
    if draft_size is None or image.format != "JPEG" or pixels <= draft_size * draft_size:
        return pixels
    with PILImage.open(io.BytesIO(image.data)) as header:  # the header only: no pixels
        header.draft("RGB", (draft_size, draft_size))
        return header.size[0] * header.size[1]


def too_many_pixels(image: CheckedImage) -> ImageTooManyPixels:
    """The 413 for an image over LOUPE_MAX_PREDICTION_PIXELS."""
    limit = settings.LOUPE_MAX_PREDICTION_PIXELS
    return ImageTooManyPixels(
        f"The image is {image.width} x {image.height} pixels "
        f"({image.width * image.height / 1_000_000:.1f} million); predictions take at most "
        f"{limit / 1_000_000:g} million pixels. Scale it down and send it again.",
        reason="too_many_pixels",
        max_pixels=limit,
    )


def score_output(target: Target, output: ModelOutput) -> PredictionOutcome:
    """The API's results and the uncertainty of one model output (rules: ml.uncertainty)."""
    from training.ml.uncertainty import (
        classification_uncertainty,
        detection_uncertainty,
        flip_disagreement,
        with_flip_disagreement,
    )

    probabilities = np.asarray(output.probabilities, dtype=np.float32)
    threshold = min(max(target.threshold, 0.01), 0.99)
    disagreement: float | None = None
    if target.is_detection:
        results = [
            _box_result(target, box) for box in output.boxes if int(box[0]) < len(target.tags)
        ]
        results.sort(key=lambda row: -row["probability"])
        uncertainty = detection_uncertainty([results], threshold=threshold)[0]
        if output.mirrored_boxes is not None:
            known = len(target.tags)
            disagreement, _ = flip_disagreement(
                [box for box in output.boxes if int(box[0]) < known],
                [box for box in output.mirrored_boxes if int(box[0]) < known],
                threshold=threshold,
            )
            uncertainty = with_flip_disagreement(uncertainty, disagreement)
    else:
        results = [
            _tag_result(tag, float(probabilities[tag.index]))
            for tag in target.tags
            if tag.index < len(probabilities)
        ]
        results.sort(key=lambda row: -row["probability"])
        uncertainty = classification_uncertainty(
            probabilities[None, :], multilabel=target.is_multilabel, threshold=threshold
        )[0]
    return PredictionOutcome(
        results, probabilities, float(uncertainty), output.embedding, disagreement
    )


def _model(target: Target) -> Any:
    from predictions.model_cache import model_cache
    from predictions.services.serving import load_model

    return model_cache().get(
        target.cache_key, lambda: load_model(target.iteration_id, target.artifact_name)
    )


def _tag_result(tag: TargetTag, probability: float) -> dict[str, Any]:
    return {
        "probability": round(probability, 6),
        "tagId": tag.tag_id,
        "tagName": tag.name,
        "tagType": "Regular",
    }


def _box_result(target: Target, box: tuple[Any, ...]) -> dict[str, Any]:
    index, probability, left, top, width, height = box
    row = _tag_result(target.tags[int(index)], float(probability))
    row["boundingBox"] = {
        "left": round(float(left), 6),
        "top": round(float(top), 6),
        "width": round(float(width), 6),
        "height": round(float(height), 6),
    }
    return row


def store_prediction(
    *,
    target: Target,
    image: CheckedImage,
    outcome: PredictionOutcome,
    application: str = "",
    original_name: str = "",
) -> Prediction:
    """Keep the image (not training data), the results and the ranking columns.

    `original_name` is the file's own name when the caller knows it (the quick test's file or
    URL), so a reviewer sees "sku-1234.jpg" rather than a hash; otherwise one is made up.
    """
    extension = SUPPORTED_FORMATS[image.format]
    name = f"images/{target.project_id}/{image.sha256[:2]}/{image.sha256}.{extension}"
    stored = default_storage.save(name, ContentFile(image.data))
    try:
        with transaction.atomic():
            prediction = _insert(target, image, outcome, stored, application, original_name)
    except BaseException:
        default_storage.delete(stored)  # no row points at it
        raise
    return prediction


def _insert(
    target: Target,
    image: CheckedImage,
    outcome: PredictionOutcome,
    stored: str,
    application: str,
    original_name: str,
) -> Prediction:
    default_name = f"prediction-{image.sha256[:12]}.{SUPPORTED_FORMATS[image.format]}"
    row = Image.objects.create(
        project_id=target.project_id,
        file=stored,
        original_name=_base_name(original_name) or default_name,
        sha256=image.sha256,
        format=image.format,
        size_bytes=len(image.data),
        width=image.width,
        height=image.height,
        source=Image.Source.PREDICTION,
        is_training=False,
    )
    top = outcome.results[0] if outcome.results else None
    prediction = Prediction.objects.create(
        project_id=target.project_id,
        iteration_id=target.iteration_id,
        image=row,
        results=outcome.results,
        embedding=np.asarray(outcome.embedding, dtype="<f2").tobytes(),
        uncertainty=outcome.uncertainty,
        flip_disagreement=outcome.flip_disagreement,
        top_tag_id=top["tagId"] if top else None,
        top_probability=top["probability"] if top else 0.0,
        application=application[:100],
    )
    PredictionScore.objects.bulk_create(
        [
            PredictionScore(
                prediction=prediction,
                iteration_id=target.iteration_id,
                tag_id=tag.tag_id,
                probability=float(outcome.probabilities[tag.index]),
            )
            for tag in target.tags
            if tag.tag_id is not None and tag.index < len(outcome.probabilities)
        ]
    )
    enqueue_thumbnails_after_commit([row.pk])
    return prediction


def _base_name(name: str) -> str:
    """The last path segment, as ingest keeps it (a browser may send "folder/a.jpg")."""
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip()[:255]


def api_response(
    target: Target, outcome: PredictionOutcome, prediction: Prediction | None
) -> dict[str, Any]:
    """Custom Vision's ImagePrediction: id (null when not stored), project, iteration, created."""
    from django.utils import timezone

    created = prediction.created if prediction is not None else timezone.now()
    return {
        "id": prediction.pk if prediction is not None else None,
        "project": target.project_id,
        "iteration": target.iteration_id,
        "created": created.isoformat().replace("+00:00", "Z"),
        "predictions": outcome.results,
    }


@dataclass(frozen=True)
class QuickTestResult:
    target: Target
    image: CheckedImage
    outcome: PredictionOutcome
    prediction: Prediction | None
    name: str  # the file's or the URL's name


def quick_test(
    *,
    project: Project,
    iteration_id: int,
    by: Any,
    store: bool,
    data: bytes | None = None,
    name: str = "",
    url: str = "",
) -> QuickTestResult:
    """The browser's quick test: any completed iteration (published or not), any member.

    The image is `data` (an uploaded file called `name`) or, when `url` is given, fetched
    from there by predictions.services.fetch (public addresses only, size and time capped).
    Storing the result puts an image in the Predictions tab, which is reviewers' work: an
    annotator may test but not store (refused before anything is fetched or run).
    """
    from labeling.access import has_role, require_role
    from labeling.models import Role
    from predictions.services.fetch import fetch_image

    require_role(by, project, Role.ANNOTATOR)
    if store and not has_role(by, project, Role.REVIEWER):
        raise Forbidden(
            "Annotators can test an image but not store it: stored predictions go to the "
            "Predictions tab, which reviewers and admins triage. Untick “Store it” to test."
        )
    iteration = project.iterations.completed().filter(pk=iteration_id).first()
    if iteration is None:
        raise NotFound("Choose a completed iteration of this project.")
    target = replace(target_for(project, iteration), check_flip=store)
    if url:
        fetched = fetch_image(url, max_bytes=settings.LOUPE_MAX_PREDICTION_BYTES)
        data, name = fetched.data, fetched.name
    image, outcome = predict_bytes(target, data or b"")
    prediction = (
        store_prediction(target=target, image=image, outcome=outcome, original_name=name)
        if store
        else None
    )
    return QuickTestResult(target, image, outcome, prediction, _base_name(name))
