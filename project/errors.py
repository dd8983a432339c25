"""Domain errors shared by every app, and the two places that turn them into responses.

A `LoupeError` carries a stable `code` for clients and tests, an HTTP status, and a message
written as a full sentence that is safe to show to the user.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
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


class ValidationFailed(LoupeError):
    code = "invalid"
    http_status = 422


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: LoupeErrors become `{"code", "message", ...}` with their status."""
    if isinstance(exc, LoupeError):
        return Response(exc.as_dict(), status=exc.http_status)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        code = getattr(detail, "code", "error")
        response.data = {"code": code, "message": str(detail)}
    elif response is not None and response.status_code == status.HTTP_400_BAD_REQUEST:
        response.data = {
            "code": "invalid",
            "message": "The request is not valid.",
            "errors": response.data,
        }
    return response


def error_response(request: HttpRequest, err: LoupeError) -> HttpResponse:
    """Answer an HTML/htmx request that failed with a LoupeError."""
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(err.as_dict(), status=err.http_status)
    from django.template.response import TemplateResponse

    return TemplateResponse(
        request, "components/_error.html", {"error": err}, status=err.http_status
    )
