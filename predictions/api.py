"""The prediction API, Custom Vision v3.0-shaped:

    POST /api/predict/<project_id>/classify/iterations/<publish_name>/image[/nostore]
    POST /api/predict/<project_id>/detect/iterations/<publish_name>/image[/nostore]

Header `Prediction-Key`; body multipart (field `imageData`, with or without a filename) or raw
`application/octet-stream`. Errors are `{"code", "message"}` at the top level.

Why a plain async Django view and not a DRF APIView: under ASGI every sync view runs on one
shared thread, so a sync endpoint decodes and runs the model for one request at a time while
the CPU's other core idles. Here only the database work goes through that thread
(`sync_to_async`); decoding and the forward pass run on the default thread pool, so requests
overlap (bench/prediction_api.py measures it). The body is read raw before anything touches
`request.POST`: Django would turn a multipart part without a filename (what the Custom Vision
SDK sends for bytes) into text and destroy the image.
"""

from __future__ import annotations

import asyncio
import logging
import re

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
    check_image,
    raise_too_large,
    resolve_target,
    run_model,
    store_prediction,
)
from project.errors import LoupeError

logger = logging.getLogger(__name__)

# Room for the multipart envelope (boundaries, part headers) around the largest image.
_MULTIPART_SLACK_BYTES = 64 * 1024
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PART_NAME = re.compile(rb'name="([^"]*)"', re.IGNORECASE)


def _image_bytes(request: HttpRequest) -> bytes:
    """The image from a multipart body (part `imageData`, else the first part) or a raw body."""
    content_type = request.META.get("CONTENT_TYPE", "")
    body = request.body
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


async def _predict(
    request: HttpRequest, project_id: int, publish_name: str, *, kind: str, store: bool
) -> JsonResponse:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.LOUPE_MAX_PREDICTION_BYTES + _MULTIPART_SLACK_BYTES:
            raise_too_large(declared)  # before reading a byte of it
        target = await sync_to_async(resolve_target)(
            project_id=project_id,
            publish_name=publish_name,
            secret=request.headers.get("Prediction-Key"),
            kind=kind,
        )
        image = await asyncio.to_thread(check_image, _image_bytes(request))
        outcome = await asyncio.to_thread(run_model, target, image)
        prediction = None
        if store:
            prediction = await sync_to_async(store_prediction)(
                target=target,
                image=image,
                outcome=outcome,
                application=request.GET.get("application", ""),
            )
    except LoupeError as err:
        return JsonResponse(err.as_dict(), status=err.http_status)
    except ValueError:
        return JsonResponse(
            {"code": "BadRequest", "message": "The Content-Length header is not a number."},
            status=400,
        )
    return JsonResponse(api_response(target, outcome, prediction))


def _endpoint(kind: str, store: bool):  # type: ignore[no-untyped-def]
    async def view(request: HttpRequest, project_id: int, publish_name: str) -> JsonResponse:
        return await _predict(request, project_id, publish_name, kind=kind, store=store)

    view.__name__ = f"{kind}_image{'' if store else '_nostore'}"
    return csrf_exempt(require_POST(view))


classify_image = _endpoint(CLASSIFY, store=True)
classify_image_nostore = _endpoint(CLASSIFY, store=False)
detect_image = _endpoint(DETECT, store=True)
detect_image_nostore = _endpoint(DETECT, store=False)
