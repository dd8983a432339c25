"""Custom Vision's Prediction API (v3.0 and v3.1) over Loupe's prediction services:

    POST /customvision/v3.{0,1}/prediction/{projectId}/{classify|detect}/iterations/
         {publishedName}/{image|url}[/nostore]

and the same image routes under /api/predict/{project_id}/... (Loupe's first prediction URLs,
kept as aliases: the same code, answering Loupe's integer ids instead of UUIDs).

Header `Prediction-Key` (a project's key or an account's prediction key). The image comes as
multipart (part `imageData`, with or without a filename), a raw body (application/octet-stream)
or, on the /url routes, JSON `{"url": "..."}` fetched by predictions.services.fetch (public
addresses only, size and time capped, at most 3 redirects each checked again). Errors are
`{"code", "message"}` at the top level with Custom Vision's codes and statuses (the aliases
keep their own: Loupe's codes, 413 for a too large image).

`answer(PredictionCall)` does the whole request (key, target, image, model, storage) in one
synchronous call. Two transports run it in one hop to a thread: the Django views below (the
test client, WSGI, anything the fast lane hands back) and customvision/fast_lane.py, the ASGI
app in front of Django that serves every route these views mark with `prediction_route`.
Not a DRF APIView: DRF's request parsing and a sync view's thread hops would be the overhead
the lane avoids (bench/prediction_api.py); predictions/openapi.py describes the aliases.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from customvision.ids import Kind, from_uuid, optional_uuid, to_uuid
from customvision.training_wire import iso, multipart_parts, translated
from predictions.model_cache import RETRY_AFTER_S
from predictions.models import Prediction
from predictions.services.fetch import fetch_image
from predictions.services.predict import (
    CLASSIFY,
    DETECT,
    PredictionOutcome,
    Target,
    predict_bytes,
    resolve_target,
    store_prediction,
    too_large,
)
from project.errors import LoupeError

logger = logging.getLogger(__name__)

# Room for the multipart envelope (boundaries, part headers) around the largest image.
MULTIPART_SLACK_BYTES = 64 * 1024

IMAGE, URL = "image", "url"  # where the image comes from: the body, or a URL in the body
UUIDS, NATIVE = "uuids", "native"  # how ids are written: Custom Vision's, or Loupe's integers
# An ImageUrl body is a few hundred bytes; anything near this is not one.
MAX_URL_BODY_BYTES = 16 * 1024


@dataclass(frozen=True)
class PredictionCall:
    """One prediction request, taken off its transport (Django's view or the fast lane)."""

    project_id: int | str  # as the path spells it: a UUID, or Loupe's integer
    publish_name: str
    kind: str  # CLASSIFY or DETECT
    store: bool
    secret: str | None
    content_type: str
    body: bytes
    application: str = ""
    source: str = IMAGE
    ids: str = UUIDS


def max_body_bytes(source: str) -> int:
    if source == URL:
        return MAX_URL_BODY_BYTES
    return int(settings.LOUPE_MAX_PREDICTION_BYTES) + MULTIPART_SLACK_BYTES


class BadBody(LoupeError):
    """The body is not what the route reads (Custom Vision: BadRequest)."""

    code = "BadRequest"
    http_status = 400


class UrlBodyTooLarge(LoupeError):
    code = "BadRequest"
    http_status = 413


class ServerBusy(LoupeError):
    """The database stayed locked by other work past its wait (SQLite's busy_timeout): the
    request did nothing and may be sent again (503 with Retry-After)."""

    code = "server_busy"
    http_status = 503


def response_headers(status: int) -> dict[str, str]:
    """Retry-After on a 503 (a model still loading, a busy database): the same request may be
    sent again after that many seconds."""
    return {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}


def database_busy(err: OperationalError) -> bool:
    """Whether `err` is a lock wait that ran out (retryable), not a broken query or schema.

    By the driver's error code: SQLite's SQLITE_BUSY / SQLITE_LOCKED (any extended variant),
    PostgreSQL's lock_not_available and deadlock_detected.
    """
    cause = err.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return getattr(cause, "sqlstate", None) in ("55P03", "40P01")


def declared_size_error(
    content_length: str | None, source: str = IMAGE, ids: str = UUIDS
) -> tuple[int, dict[str, Any]] | None:
    """The answer to a request whose declared size is refused before a byte of it is read."""
    try:
        declared = int(content_length or 0)
    except ValueError:
        return error_answer(BadBody("The Content-Length header is not a number."), ids)
    if declared > max_body_bytes(source):
        return body_too_large(declared, source, ids)
    return None


def body_too_large(size: int, source: str, ids: str = UUIDS) -> tuple[int, dict[str, Any]]:
    """The answer to a body of `size` bytes, past its route's limit."""
    if source == URL:
        err: LoupeError = UrlBodyTooLarge(
            'The body of an image URL request is {"url": "..."}; this one is too large.'
        )
    else:
        err = too_large(size)
    return error_answer(err, ids)


def error_answer(err: LoupeError, ids: str) -> tuple[int, dict[str, Any]]:
    """Custom Vision's status and `{"code", "message"}`; the aliases' own (err.as_dict())."""
    if ids == NATIVE:
        return err.http_status, err.as_dict()
    return translated(err)


def answer(call: PredictionCall) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one prediction: key, target, image, model, storage.

    Synchronous and whole on purpose: each transport runs it in one hop to a thread, so a
    request costs one thread switch and not one per step (bench/prediction_api.py).
    """
    try:
        target = resolve_target(
            project_id=from_uuid(call.project_id, Kind.PROJECT),
            publish_name=call.publish_name,
            secret=call.secret,
            kind=call.kind,
            store=call.store,
        )
        name = ""
        if call.source == URL:
            # After the key and the publish name: nobody without a key makes Loupe fetch.
            fetched = fetch_image(
                image_url(call.body), max_bytes=settings.LOUPE_MAX_PREDICTION_BYTES
            )
            data, name = fetched.data, fetched.name
        else:
            data = image_bytes(call.content_type, call.body)
        image, outcome = predict_bytes(target, data)
        prediction = None
        if call.store:
            prediction = store_prediction(
                target=target,
                image=image,
                outcome=outcome,
                application=call.application,
                original_name=name,
            )
    except LoupeError as err:
        return error_answer(err, call.ids)
    except OperationalError as err:
        if not database_busy(err):
            raise
        # A write (storing the prediction) waited busy_timeout behind another writer on a
        # loaded server; the transaction rolled back, so the client can simply retry.
        logger.warning("Prediction refused as busy: %s", err)
        busy = ServerBusy(
            f"The server is busy; nothing was stored. Try again in {RETRY_AFTER_S} seconds.",
            retry_after_s=RETRY_AFTER_S,
        )
        return error_answer(busy, call.ids)
    return 200, image_prediction(target, outcome, prediction, ids=call.ids)


def image_prediction(
    target: Target, outcome: PredictionOutcome, prediction: Prediction | None, *, ids: str = UUIDS
) -> dict[str, Any]:
    """Custom Vision's ImagePrediction: id (the stored prediction; null for /nostore), project,
    iteration, created, and `predictions` highest probability first (each with tagId, tagName,
    tagType and, for detection, boundingBox)."""
    from django.utils import timezone

    created = prediction.created if prediction is not None else timezone.now()
    if ids == NATIVE:
        return {
            "id": prediction.pk if prediction is not None else None,
            "project": target.project_id,
            "iteration": target.iteration_id,
            "created": iso(created),
            "predictions": outcome.results,
        }
    return {
        "id": optional_uuid(Kind.PREDICTION, prediction.pk if prediction is not None else None),
        "project": to_uuid(Kind.PROJECT, target.project_id),
        "iteration": to_uuid(Kind.ITERATION, target.iteration_id),
        "created": iso(created),
        "predictions": [prediction_result(row) for row in outcome.results],
    }


def prediction_result(row: dict[str, Any]) -> dict[str, Any]:
    """One stored result row (Loupe's integer tagId) as Custom Vision's Prediction."""
    result = {**row, "tagId": optional_uuid(Kind.TAG, row.get("tagId"))}
    result.setdefault("tagType", "Regular")
    return result


def image_bytes(content_type: str, body: bytes) -> bytes:
    """The image from a multipart body (part `imageData`, else the first part) or a raw body.

    Split by hand: Django's parser turns a part without a filename (what the SDK sends when
    given bytes) into text and destroys the image.
    """
    if not content_type.lower().startswith("multipart/"):
        return body
    parts = multipart_parts(content_type, body)
    for part in parts:
        if part.field == "imageData":
            return part.data
    if parts:
        return parts[0].data
    raise BadBody("The multipart body holds no image part.", reason="bad_multipart")


def image_url(body: bytes) -> str:
    """The `url` of Custom Vision's ImageUrl body, `{"url": "..."}`."""
    try:
        value = json.loads(body) if body.strip() else None
    except (UnicodeDecodeError, ValueError):
        value = None
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str) or not url.strip():
        raise BadBody(
            'Send the image\'s address as a JSON body: {"url": "https://..."}.', reason="no_url"
        )
    return url


def prediction_call(
    request: HttpRequest,
    *,
    body: bytes,
    project_id: int | str,
    publish_name: str,
    kind: str,
    store: bool,
    source: str = IMAGE,
    ids: str = UUIDS,
) -> PredictionCall:
    """The call a request makes (`body` passed in: the fast lane reads it off the ASGI stream)."""
    return PredictionCall(
        project_id=project_id,
        publish_name=publish_name,
        kind=kind,
        store=store,
        secret=request.headers.get("Prediction-Key"),
        content_type=request.META.get("CONTENT_TYPE", ""),
        body=body,
        application=request.GET.get("application", ""),
        source=source,
        ids=ids,
    )


def _endpoint(kind: str, *, store: bool, source: str, ids: str):  # type: ignore[no-untyped-def]
    async def view(request: HttpRequest, project_id: int | str, publish_name: str) -> JsonResponse:
        refused = declared_size_error(request.META.get("CONTENT_LENGTH"), source, ids)
        if refused is not None:
            status, payload = refused
            return JsonResponse(payload, status=status, headers=response_headers(status))
        # Read past DATA_UPLOAD_MAX_MEMORY_SIZE: this endpoint has its own limit.
        limit = max_body_bytes(source)
        body = request.body if hasattr(request, "_body") else request.read(limit + 1)
        if len(body) > limit:
            status, payload = body_too_large(len(body), source, ids)
            return JsonResponse(payload, status=status, headers=response_headers(status))
        call = prediction_call(
            request,
            body=body,
            project_id=project_id,
            publish_name=publish_name,
            kind=kind,
            store=store,
            source=source,
            ids=ids,
        )
        status, payload = await sync_to_async(answer)(call)
        return JsonResponse(payload, status=status, headers=response_headers(status))

    view.__name__ = f"{kind}_{source}{'' if store else '_nostore'}"
    endpoint = csrf_exempt(require_POST(view))
    # What the fast lane (customvision/fast_lane.py) reads to serve this route itself.
    endpoint.prediction_route = {"kind": kind, "store": store, "source": source, "ids": ids}
    return endpoint


# Custom Vision's routes (UUID ids).
classify_image = _endpoint(CLASSIFY, store=True, source=IMAGE, ids=UUIDS)
classify_image_nostore = _endpoint(CLASSIFY, store=False, source=IMAGE, ids=UUIDS)
classify_url = _endpoint(CLASSIFY, store=True, source=URL, ids=UUIDS)
classify_url_nostore = _endpoint(CLASSIFY, store=False, source=URL, ids=UUIDS)
detect_image = _endpoint(DETECT, store=True, source=IMAGE, ids=UUIDS)
detect_image_nostore = _endpoint(DETECT, store=False, source=IMAGE, ids=UUIDS)
detect_url = _endpoint(DETECT, store=True, source=URL, ids=UUIDS)
detect_url_nostore = _endpoint(DETECT, store=False, source=URL, ids=UUIDS)

# The /api/predict/ aliases (Loupe's integer ids, as they always answered).
native_classify_image = _endpoint(CLASSIFY, store=True, source=IMAGE, ids=NATIVE)
native_classify_image_nostore = _endpoint(CLASSIFY, store=False, source=IMAGE, ids=NATIVE)
native_detect_image = _endpoint(DETECT, store=True, source=IMAGE, ids=NATIVE)
native_detect_image_nostore = _endpoint(DETECT, store=False, source=IMAGE, ids=NATIVE)
