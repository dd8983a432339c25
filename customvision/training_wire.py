"""The Training API's wire: key, method dispatch, query and body parsing, errors, JSON.

Every Training API route is a plain Django view made by `endpoint(GET=..., POST=...)`, not a
DRF view: the SDK's requests break DRF's assumptions (bodyless POSTs that declare JSON,
multipart parts without a filename that Django would turn into text, 64-image base64 bodies
far past DATA_UPLOAD_MAX_MEMORY_SIZE). A handler gets the request, the user the
`Training-Key` acts as, and the URL's ids already turned into Loupe's integers; it returns the
JSON value to send (200), `NO_CONTENT` (204), or a `Reply` with another status (207).

Errors leave as Custom Vision's `{"code", "message"}` at the top level: a LoupeError whose code
is already one of Custom Vision's (BadRequestImageFormat, Unauthorized, ...) keeps it, Loupe's
own codes are translated by `CV_CODES`, and a handler names the precise code where the
context knows it (`cv_error("BadRequestTagNameNotUnique", ...)`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from customvision.ids import Kind, from_uuid
from labeling.services.api_keys import authenticate_training_key
from project.errors import LoupeError


def case_free(word: str) -> str:
    """A regex matching `word` in any case (character classes: `(?i:...)` would apply to
    the rest of Django's combined pattern)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


# Where project/urls.py mounts training_urls: v3.0 to v3.3 and v3.4-preview, any case. Written
# without alternation so Django's reverse() can build its addresses (it refuses `a|b`); the
# price is that v3.4 and v3.0-preview are accepted too, which harms no one.
TRAINING_PREFIX = (
    rf"^customvision/{case_free('v')}3\.[0-4](?:-{case_free('preview')})?/{case_free('training')}/"
)
_TRAINING_PREFIX_RE = re.compile(TRAINING_PREFIX)


def training_base(request: HttpRequest) -> str:
    """The Training API's root as this request spelled it (`/customvision/v3.3/Training/`), so
    the addresses it hands out use the client's own version."""
    match = _TRAINING_PREFIX_RE.match(request.path_info.lstrip("/"))
    return "/" + (match.group(0) if match else "customvision/v3.3/training/")


# Loupe's error codes -> (HTTP status, Custom Vision code). Custom Vision answers 400 for
# every refused rule; our 422s (validation, label rules) become 400 here.
CV_CODES: dict[str, tuple[int, str]] = {
    "not_found": (404, "NotFound"),
    "forbidden": (403, "Forbidden"),
    "invalid": (400, "BadRequest"),
    "label_rule": (400, "BadRequest"),
    "invalid_id": (400, "BadRequestInvalidIds"),
    "edit_conflict": (409, "Conflict"),
    "no_files": (400, "BadRequestImageBatch"),
    "locked_out": (429, "BadRequestExceededQuota"),
    # The services' named refusals (a LoupeError subclass each, with its own code).
    "tag_name_taken": (400, "BadRequestTagNameNotUnique"),
    "negative_tag_exists": (400, "BadRequestMultipleNegativeTag"),
    "negative_tag_not_alone": (400, "BadRequestNegativeAndRegularTagOnSameImage"),
    "training_not_needed": (400, "BadRequestTrainingNotNeeded"),
    "training_in_progress": (400, "BadRequestTrainingAlreadyInProgress"),
    # Retryable: the server is busy (a model still loading, the database locked past its wait).
    "model_loading": (503, "ServiceUnavailable"),
    "server_busy": (503, "ServiceUnavailable"),
}


class CvError(LoupeError):
    """An error that already speaks Custom Vision: its code and status are given per instance."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = status


def cv_error(code: str, message: str, status: int | None = None) -> CvError:
    """A Custom Vision error; the status follows the code's family unless given."""
    if status is None:
        status = 404 if code.startswith("NotFound") else 400
    return CvError(code, message, status)


def translated(err: LoupeError) -> tuple[int, dict[str, str]]:
    """The status and `{"code", "message"}` body Custom Vision clients expect for `err`."""
    if isinstance(err, CvError) or err.code not in CV_CODES:
        code, status = err.code, err.http_status
        # Loupe's own Custom Vision codes (the prediction services') answer 413 for a too
        # large image; Custom Vision answers every BadRequest* with 400.
        if code.startswith("BadRequest"):
            status = 400
    else:
        status, code = CV_CODES[err.code]
    return status, {"code": code, "message": err.message}


# --- Responses ---------------------------------------------------------------------------------


class _NoContent:
    pass


NO_CONTENT = _NoContent()


@dataclass(frozen=True)
class Reply:
    """A JSON body with a status other than 200 (207 for a partly refused batch)."""

    status: int
    body: Any


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a `T` and a `Z`, as the SDK's deserializer needs (or None)."""
    if moment is None:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def json_response(status: int, body: Any) -> HttpResponse:
    # safe=False: bare values (a count, `true`, a list) are bodies of their own in this API.
    return JsonResponse(body, status=status, safe=False)


def error_response(err: LoupeError) -> HttpResponse:
    status, body = translated(err)
    return json_response(status, body)


Handler = Callable[..., Any]


def endpoint(**handlers: Handler) -> Callable[..., HttpResponse]:
    """A view serving `handlers` by HTTP method (`GET=...`, `POST=...`), behind the key.

    URL keyword arguments named `<kind>_id` (project_id, iteration_id, tag_id, image_id) are
    read as that kind's UUID; one that is not answers 404 with the kind's NotFound code, as
    Custom Vision does for an unknown id.
    """

    def view(request: HttpRequest, **kwargs: str) -> HttpResponse:
        handler = handlers.get(request.method or "")
        if handler is None:
            return json_response(
                405,
                {
                    "code": "BadRequestOperationNotSupported",
                    "message": f"{request.method} is not supported here; use "
                    f"{' or '.join(sorted(handlers))}.",
                },
            )
        try:
            user = authenticate_training_key(request.headers.get("Training-Key"))
            ids = {name: _path_id(name, value) for name, value in kwargs.items()}
            result = handler(request, user, **ids)
        except LoupeError as err:
            return error_response(err)
        if isinstance(result, _NoContent):
            return HttpResponse(status=204)
        if isinstance(result, Reply):
            return json_response(result.status, result.body)
        if isinstance(result, HttpResponse):
            return result
        return json_response(200, result)

    return csrf_exempt(view)


_PATH_KINDS = {
    "project_id": (Kind.PROJECT, "NotFoundProject", "project"),
    "iteration_id": (Kind.ITERATION, "NotFoundIteration", "iteration"),
    "tag_id": (Kind.TAG, "NotFoundTag", "tag"),
    "image_id": (Kind.IMAGE, "NotFoundImage", "image"),
}


def _path_id(name: str, value: str) -> int | str:
    if name not in _PATH_KINDS:
        return value  # not a Loupe id (a domain's fixed UUID)
    kind, code, what = _PATH_KINDS[name]
    pk = from_uuid(value, kind)
    if pk is None:
        raise cv_error(code, f"There is no {what} with the id “{value[:60]}”.")
    return pk


def unsupported(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any Training API address this server does not serve: a clear 404, never a page."""
    return json_response(
        404,
        {
            "code": "NotFound",
            "message": f"{request.method} /{rest} is not an operation of the Custom Vision "
            "Training API that this server supports.",
        },
    )


unsupported_view = csrf_exempt(unsupported)


# --- Query strings -----------------------------------------------------------------------------


def query_text(request: HttpRequest, name: str, default: str = "") -> str:
    return request.GET.get(name, default).strip()


def query_required(request: HttpRequest, name: str) -> str:
    value = query_text(request, name)
    if not value:
        raise cv_error(
            "BadRequestRequiredParamIsNull", f"The query parameter “{name}” is required."
        )
    return value


def query_bool(request: HttpRequest, name: str, default: bool = False) -> bool:
    value = query_text(request, name).lower()
    if not value:
        return default
    if value in {"true", "1"}:
        return True
    if value in {"false", "0"}:
        return False
    raise cv_error("BadRequest", f"“{name}” must be true or false.")


def query_float(
    request: HttpRequest, name: str, default: float, *, low: float = 0.0, high: float = 1.0
) -> float:
    value = query_text(request, name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not low <= number <= high:
        raise cv_error("BadRequest", f"“{name}” must be a number from {low:g} to {high:g}.")
    return number


def query_int(request: HttpRequest, name: str, default: int, *, low: int, high: int) -> int:
    value = query_text(request, name)
    if not value:
        return default
    if not re.fullmatch(r"-?\d{1,12}", value) or not low <= int(value) <= high:
        raise cv_error("BadRequest", f"“{name}” must be a whole number from {low} to {high}.")
    return int(value)


def query_choice(request: HttpRequest, name: str, choices: tuple[str, ...], default: str) -> str:
    """One of `choices`, matched without regard to case (the SDK sends them capitalised)."""
    value = query_text(request, name)
    if not value:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise cv_error("BadRequest", f"“{name}” must be one of {', '.join(choices)}.")


def optional_id(value: object, kind: Kind, *, field: str) -> int | None:
    """An optional id (query or body): None when absent, BadRequestInvalidIds when not an id."""
    if value in (None, ""):
        return None
    pk = from_uuid(value, kind)
    if pk is None:
        raise cv_error("BadRequestInvalidIds", f"“{field}” is not an id: “{str(value)[:60]}”.")
    return pk


# --- Bodies --------------------------------------------------------------------------------------


def read_body(request: HttpRequest, *, max_bytes: int) -> bytes:
    """The raw body, refused by its declared size before a byte is read (400, as Custom Vision).

    Read from the stream, not `request.body`: Django caps `body` at
    DATA_UPLOAD_MAX_MEMORY_SIZE (10 MB), which one 64-image base64 batch passes.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise cv_error("BadRequest", "The Content-Length header is not a number.") from None
    if declared > max_bytes:
        raise cv_error(
            "BadRequestImageBatch",
            f"The request body is {declared / 1_000_000:.1f} MB; this operation takes at most "
            f"{max_bytes / 1_000_000:.0f} MB.",
        )
    if getattr(request, "_body", None) is not None:
        return request._body  # type: ignore[attr-defined,no-any-return]
    data = request.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise cv_error(
            "BadRequestImageBatch",
            f"The request body is larger than {max_bytes / 1_000_000:.0f} MB, the most this "
            "operation takes.",
        )
    request._body = data  # type: ignore[attr-defined]
    return data


def json_body(request: HttpRequest, *, max_bytes: int = 1_000_000, required: bool = True) -> Any:
    """The JSON body; `{}` for an empty one when not `required` (the SDK sends bodyless POSTs
    with a JSON content type). Malformed JSON is a 400 naming the problem."""
    data = read_body(request, max_bytes=max_bytes)
    if not data.strip():
        if required:
            raise cv_error("BadRequestRequiredParamIsNull", "The request body (JSON) is missing.")
        return {}
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise cv_error("BadRequest", f"The request body is not valid JSON ({err}).") from None
    except RecursionError:  # thousands of nested brackets
        raise cv_error("BadRequest", "The request body nests too deeply.") from None


def body_object(request: HttpRequest, *, max_bytes: int = 1_000_000, required: bool = True) -> dict:  # type: ignore[type-arg]
    body = json_body(request, max_bytes=max_bytes, required=required)
    if not isinstance(body, dict):
        raise cv_error("BadRequest", "The request body must be a JSON object.")
    return body


def body_date(value: object, field: str) -> datetime | None:
    """A date-time from a JSON body (the SDK sends `2024-01-02T03:04:05.000Z`)."""
    if value in (None, ""):
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise cv_error("BadRequest", f"“{field}” must be an ISO-8601 date and time.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


@dataclass(frozen=True)
class Part:
    """One image of a request body: its bytes and the filename the client gave, if any."""

    name: str
    data: bytes
    field: str = ""  # the multipart field ("imageData" from the SDK); "" for a raw body


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_DISPOSITION_FILENAME = re.compile(rb'\bfilename="([^"]*)"', re.IGNORECASE)


def image_parts(request: HttpRequest, *, max_bytes: int) -> list[Part]:
    """The images of a multipart body (every file part, `imageData` first among equals) or of a
    raw body (`application/octet-stream` or any non-multipart type).

    The multipart body is split here, from the raw bytes: Django's parser makes a part without
    a filename (what the SDK sends for `bytes`) a text field and destroys the image.
    """
    content_type = request.META.get("CONTENT_TYPE", "")
    data = read_body(request, max_bytes=max_bytes)
    if not content_type.lower().startswith("multipart/"):
        return [Part("", data)] if data else []
    return multipart_parts(content_type, data)


def multipart_parts(content_type: str, data: bytes) -> list[Part]:
    """Every part of a multipart body, split from the raw bytes (the prediction API's fast lane
    has bytes and no request), with its field name and the base name of its filename."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise cv_error("BadRequestImageStream", "The multipart body has no boundary.")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in data.split(delimiter)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            continue
        filename = _DISPOSITION_FILENAME.search(head)
        name = filename.group(1).decode("utf-8", "replace") if filename else ""
        field = _DISPOSITION_NAME.search(head)
        parts.append(
            Part(
                name.replace("\\", "/").rsplit("/", 1)[-1],
                content.removesuffix(b"\r\n"),
                field.group(1).decode("utf-8", "replace") if field else "",
            )
        )
    return parts
