"""Login throttling glue for django-axes: the lockout answer, the client address, the token view.

Axes counts failed logins per account and per client address (settings: AXES_*,
LOUPE_LOGIN_*); past the limit its backend refuses every login there, the right password too,
until the cool-off ends or an admin lifts it. This module only shapes the answers: the login
page re-renders with a message, the JSON API answers `{"code": "locked_out", "message"}`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response

from project.errors import LockedOut, wants_json


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        "Too many failed logins for this account or from this address. Try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator to lift the "
        "lockout."
    )


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with the login page and a message, or JSON for the API."""
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if wants_json(request):
        response: HttpResponse = JsonResponse(LockedOut(lockout_message()).as_dict(), status=429)
    else:
        form = AuthenticationForm(request)
        form.fields["username"].initial = request.POST.get("username", "")
        response = TemplateResponse(
            request,
            "registration/login.html",
            {
                "form": form,
                "locked_out_message": lockout_message(),
                "next": request.POST.get("next", request.GET.get("next", "")),
            },
            status=429,
        )
        response.render()
    response["Retry-After"] = retry_after
    return response


def client_ip(request: HttpRequest) -> str:
    """AXES_CLIENT_IP_CALLABLE: the client's address, past LOUPE_PROXY_COUNT trusted proxies.

    Each trusted proxy appends the address it saw to X-Forwarded-For, so the client is that
    many entries from the right; anything further left was written by the client and is not
    trusted (else an attacker would pick a fresh address per guess).
    """
    remote = str(request.META.get("REMOTE_ADDR", ""))
    count = settings.LOUPE_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    return forwarded[-count] if len(forwarded) >= count else remote


class TokenLoginApi(ObtainAuthToken):
    """POST /api/auth/token/ (username, password) → {"token"}; 429 JSON when locked out.

    DRF hands axes its own Request object, so the lockout flag axes sets never reaches the
    middleware: this view reads it and answers in the API's error shape.
    """

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)  # type: ignore[no-any-return]
        except Exception:
            if _is_locked_out(request):
                raise LockedOut(lockout_message()) from None
            raise


def _is_locked_out(request: Request) -> bool:
    return bool(
        getattr(request, "axes_locked_out", False)
        or getattr(request._request, "axes_locked_out", False)
    )
