"""Domain errors shared by every app, and the two places that turn them into responses.

A `LoupeError` carries a stable `code` for clients and tests, an HTTP status, and a message
written as a full sentence that is safe to show to the user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class LoupeError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class NotFound(LoupeError):
    code = "not_found"
    http_status = 404


class Forbidden(LoupeError):
    code = "forbidden"
    http_status = 403


class EditConflict(LoupeError):
    code = "edit_conflict"
    http_status = 409


class LabelRuleError(LoupeError):
    code = "label_rule"
    http_status = 422


class LockedOut(LoupeError):
    code = "locked_out"
    http_status = 429


class ValidationFailed(LoupeError):
    code = "invalid"
    http_status = 422


class BadCursor(LoupeError):
    """A keyset list's `after` that the list did not give (or no longer can continue from)."""

    code = "bad_cursor"
    http_status = 400


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every error becomes `{"code", "message", ...}` with its status.

    LoupeErrors keep their code; DRF's own errors get theirs; a validation error names its
    first field in the message (and lists all in `errors`). Anything unexpected propagates:
    Django logs it with the request and `handler500` answers JSON for /api/ paths.
    """
    if isinstance(exc, LoupeError):
        return Response(exc.as_dict(), status=exc.http_status)
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django logs it and handler500 answers JSON under /api/
    if isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        code = getattr(detail, "code", "error")
        response.data = {"code": code, "message": str(detail)}
    elif response.status_code == status.HTTP_400_BAD_REQUEST:
        field, message = _first_error(response.data)
        response.data = {
            "code": "invalid",
            "message": f"“{field}”: {message}" if field else message,
            "errors": response.data,
        }
        if field:
            response.data["field"] = field
    return response


SERVER_ERROR = {
    "code": "server_error",
    "message": "Something went wrong on the server; the error was logged. Try again later.",
}


def _first_error(errors: Any, prefix: str = "") -> tuple[str, str]:
    """The dotted name of the first invalid field and its first message."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = prefix if key == "non_field_errors" else f"{prefix}.{key}".strip(".")
            return _first_error(value, name)
    if isinstance(errors, list) and errors:
        for index, value in enumerate(errors):
            if value:
                if isinstance(value, dict | list):
                    return _first_error(value, f"{prefix}[{index}]" if prefix else "")
                return prefix, str(value)
    if errors:
        return prefix, str(errors)
    return prefix, "The request is not valid."


def wants_json(request: HttpRequest) -> bool:
    """True for the JSON API (everything under /api/) and for clients that ask for JSON."""
    return request.path.startswith("/api/") or request.headers.get("Accept", "").startswith(
        "application/json"
    )


def _json_or_default(
    request: HttpRequest, body: dict[str, str], status_code: int, default: Callable[[], Any]
) -> HttpResponse:
    if wants_json(request):
        return JsonResponse(body, status=status_code)
    return default()  # type: ignore[no-any-return]


# Django's error handlers (project/urls.py): the JSON API answers JSON even for a URL that
# matches no route, a malformed request or a crash outside DRF; pages keep Django's pages.
def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _json_or_default(
        request,
        {"code": "bad_request", "message": "The request is malformed."},
        400,
        lambda: defaults.bad_request(request, exception),
    )


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _json_or_default(
        request,
        {"code": "forbidden", "message": "You are not allowed to do this."},
        403,
        lambda: defaults.permission_denied(request, exception),
    )


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _json_or_default(
        request,
        {"code": "not_found", "message": "There is nothing at this address."},
        404,
        lambda: defaults.page_not_found(request, exception),
    )


def handler500(request: HttpRequest) -> HttpResponse:
    return _json_or_default(request, SERVER_ERROR, 500, lambda: defaults.server_error(request))


def error_response(request: HttpRequest, err: LoupeError) -> HttpResponse:
    """Answer an HTML/htmx request that failed with a LoupeError."""
    if wants_json(request):
        return JsonResponse(err.as_dict(), status=err.http_status)
    from django.template.response import TemplateResponse

    return TemplateResponse(
        request, "components/_error.html", {"error": err}, status=err.http_status
    )
