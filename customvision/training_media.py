"""Addresses the Training API hands out (images, model exports): signed, expiring, fetchable
without a key.

Custom Vision's `originalImageUri`, `thumbnailUri` and `resizedImageUri` are storage URLs with
their own signature (a client downloads them with a plain GET, no Training-Key). Ours are the
same idea: `…/training/media/<token>`, where the token is Django's signature over the image id
and the variant with a timestamp. Anyone holding the address may fetch that one file until it
expires; nothing else about the project leaks through it, and a deleted image is a 404.
"""

from __future__ import annotations

from django.core import signing
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from customvision.training_wire import json_response, training_base
from labeling.models import Image
from project.errors import LoupeError
from project.hosts import absolute_url
from project.streaming import stream_file
from training.models import ModelExport
from training.services.model_export import download_name, open_model_export

_SALT = "customvision.training.media"
# Custom Vision's own image URLs stay valid for hours; a client listing images and fetching them
# later the same day still can.
TOKEN_MAX_AGE_S = 24 * 3600
ORIGINAL, THUMBNAIL, EXPORT = "o", "t", "e"
_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


def image_uri(request: HttpRequest, image_id: int, variant: str) -> str:
    """The signed address of the image's original (`ORIGINAL`) or thumbnail (`THUMBNAIL`)."""
    token = signing.dumps([image_id, variant], salt=_SALT, compress=False)
    return absolute_url(request, f"{training_base(request)}media/{token}")


def export_uri(request: HttpRequest, export_id: int) -> str:
    """The signed address of a finished model export's zip (Export.downloadUri)."""
    token = signing.dumps([export_id, EXPORT], salt=_SALT, compress=False)
    return absolute_url(request, f"{training_base(request)}media/{token}")


@require_GET
def serve_media(request: HttpRequest, token: str) -> HttpResponse:
    try:
        image_id, variant = signing.loads(token, salt=_SALT, max_age=TOKEN_MAX_AGE_S)
    except (signing.BadSignature, ValueError, TypeError):
        return _gone("This image address is invalid or has expired; list the images again.")
    if variant == EXPORT:
        return _export(image_id)
    image = Image.objects.filter(pk=image_id).only("file", "thumbnail", "format").first()
    if image is None:
        return _gone("This image no longer exists.")
    # The worker makes thumbnails after the upload: until it has, the original stands in.
    if variant == THUMBNAIL and image.thumbnail:
        name, content_type = image.thumbnail.name, "image/jpeg"
    else:
        name, content_type = image.file.name, _CONTENT_TYPES.get(image.format, "image/jpeg")
    try:
        handle = default_storage.open(name, "rb")
    except OSError:
        return _gone("This image's file is missing on the server.")
    response = stream_file(handle, content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _export(export_id: int) -> HttpResponse:
    export = ModelExport.objects.filter(pk=export_id).first()
    if export is None:
        return _gone("This export no longer exists.", code="NotFound")
    try:
        handle = open_model_export(export)
    except LoupeError as err:
        return _gone(err.message, code="NotFound")
    return stream_file(
        handle, as_attachment=True, filename=download_name(export), content_type="application/zip"
    )


def _gone(message: str, code: str = "NotFoundImage") -> HttpResponse:
    return json_response(404, {"code": code, "message": message})
