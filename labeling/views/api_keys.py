"""The "API keys" page: each user's own training and prediction keys for the Custom Vision
APIs (create, rotate, revoke). A new secret is shown once, in the answer that made it.

Plain POST/redirect/GET works without JavaScript (the list then reloads, with the new secret
rendered once in the POST's own answer); with htmx the form posts in place and only the
`#api-keys` part is swapped.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from labeling.models import ApiKey
from labeling.services.api_keys import (
    IssuedApiKey,
    create_api_key,
    revoke_api_key,
    rotate_api_key,
)
from project.errors import LoupeError, NotFound
from project.hosts import absolute_url
from project.ids import parse_optional_id


@require_http_methods(["GET", "POST"])
@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """GET the list; POST action=create (name, kind), rotate or revoke (key_id)."""
    issued: IssuedApiKey | None = None
    notice, error, status = "", "", 200
    if request.method == "POST":
        action = request.POST.get("action", "create")
        try:
            if action == "create":
                issued = create_api_key(
                    user=request.user,
                    kind=request.POST.get("kind", ""),
                    name=request.POST.get("name", ""),
                )
            elif action in ("rotate", "revoke"):
                key_id = parse_optional_id(request.POST.get("key_id"))
                if key_id is None:
                    raise NotFound("You have no API key with this id.")
                if action == "rotate":
                    issued = rotate_api_key(user=request.user, key_id=key_id)
                else:
                    key = revoke_api_key(user=request.user, key_id=key_id)
                    notice = f"The key “{key.name}” is revoked."
                    if not request.htmx:  # type: ignore[attr-defined]
                        return redirect("labeling:api-keys")
            else:
                raise NotFound("Unknown action.")
        except LoupeError as err:
            error, status = err.message, err.http_status
    context = {
        "keys": list(ApiKey.objects.filter(user_id=request.user.pk)),
        "kinds": ApiKey.Kind.choices,
        "issued": issued,
        "notice": notice,
        "error": error,
        "endpoint": absolute_url(request, "/"),
        "posted": request.POST if error else {},
    }
    name = "labeling/api_keys.html" + ("#api-keys" if request.htmx else "")  # type: ignore[attr-defined]
    return TemplateResponse(request, name, context, status=status)
