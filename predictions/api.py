"""The prediction API, Custom Vision v3.0-shaped:

    POST /api/predict/<project_id>/classify/iterations/<publish_name>/image[/nostore]
    POST /api/predict/<project_id>/detect/iterations/<publish_name>/image[/nostore]

Header `Prediction-Key`; body multipart (field `imageData`, with or without a filename) or raw
`application/octet-stream`. Errors are `{"code", "message"}` at the top level.

Two transports share one answer: `answer(PredictionCall)` does the whole request (key,
target, image checks, model, storage) synchronously, in one hop to a thread. The server reaches
it through predictions/fast_lane.py, an ASGI app in front of Django that skips the browser's
middleware stack; the Django views below serve everything else that routes here (the test
client, a WSGI deployment, requests the fast lane hands back to Django). Not a DRF APIView:
DRF's request parsing and a sync view's thread hops would be the overhead the lane avoids, and
drf-spectacular gets the schema from predictions/openapi.py instead. The body is read raw,
never through `request.POST`: Django would turn a multipart part without a filename (what the
Custom Vision SDK sends for bytes) into text and destroy the image.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from predictions.services.predict import (
    CLASSIFY,
    DETECT,
    BadImage,
    api_response,
    predict_bytes,
    resolve_target,
    store_prediction,
    too_large,
)
from project.errors import LoupeError

logger = logging.getLogger(__name__)

# Room for the multipart envelope (boundaries, part headers) around the largest image.
MULTIPART_SLACK_BYTES = 64 * 1024
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PART_NAME = re.compile(rb'name="([^"]*)"', re.IGNORECASE)


@dataclass(frozen=True)
class PredictionCall:
    """One prediction request, taken off its transport (Django's view or the fast lane)."""

    project_id: int
    publish_name: str
    kind: str
    store: bool
    secret: str | None
    content_type: str
    body: bytes
    application: str = ""


def declared_size_error(content_length: str | None) -> tuple[int, dict[str, Any]] | None:
    """The answer to a request whose declared size is refused before a byte of it is read."""
    try:
        declared = int(content_length or 0)
    except ValueError:
        return 400, {"code": "BadRequest", "message": "The Content-Length header is not a number."}
    if declared > settings.LOUPE_MAX_PREDICTION_BYTES + MULTIPART_SLACK_BYTES:
        refusal = too_large(declared)
        return refusal.http_status, refusal.as_dict()
    return None


def answer(call: PredictionCall) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one prediction: key, target, image checks, model, storage.

    Synchronous and whole on purpose: each transport runs it in one hop to a thread, so a
    request costs one thread switch and not one per step (bench/prediction_api.py).
    """
    try:
        target = resolve_target(
            project_id=call.project_id,
            publish_name=call.publish_name,
            secret=call.secret,
            kind=call.kind,
        )
        image, outcome = predict_bytes(target, _image_bytes(call.content_type, call.body))
        prediction = None
        if call.store:
            prediction = store_prediction(
                target=target, image=image, outcome=outcome, application=call.application
            )
    except LoupeError as err:
        return err.http_status, err.as_dict()
    return 200, api_response(target, outcome, prediction)


def _image_bytes(content_type: str, body: bytes) -> bytes:
    """The image from a multipart body (part `imageData`, else the first part) or a raw body."""
    if not content_type.lower().startswith("multipart/"):
        return body
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise BadImage("The multipart body has no boundary.", reason="bad_multipart")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = _PART_NAME.search(head)
        parts.append((name.group(1) if name else b"", content.removesuffix(b"\r\n")))
    for name, content in parts:
        if name == b"imageData":
            return content
    if parts:
        return parts[0][1]
    raise BadImage("The multipart body holds no file part.", reason="bad_multipart")


def prediction_call(
    request: HttpRequest,
    *,
    body: bytes,
    project_id: int,
    publish_name: str,
    kind: str,
    store: bool,
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
    )


def _endpoint(kind: str, store: bool):  # type: ignore[no-untyped-def]
    async def view(request: HttpRequest, project_id: int, publish_name: str) -> JsonResponse:
        refused = declared_size_error(request.META.get("CONTENT_LENGTH"))
        if refused is not None:
            status, payload = refused
            return JsonResponse(payload, status=status)
        call = prediction_call(
            request,
            body=request.body,
            project_id=project_id,
            publish_name=publish_name,
            kind=kind,
            store=store,
        )
        status, payload = await sync_to_async(answer)(call)
        return JsonResponse(payload, status=status)

    view.__name__ = f"{kind}_image{'' if store else '_nostore'}"
    endpoint = csrf_exempt(require_POST(view))
    # What the fast lane (predictions/fast_lane.py) reads to serve this route itself.
    endpoint.prediction_route = {"kind": kind, "store": store}
    return endpoint


classify_image = _endpoint(CLASSIFY, store=True)
classify_image_nostore = _endpoint(CLASSIFY, store=False)
detect_image = _endpoint(DETECT, store=True)
detect_image_nostore = _endpoint(DETECT, store=False)
