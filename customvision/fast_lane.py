"""The prediction API's fast lane: a small ASGI app in front of Django for prediction POSTs
(/customvision/v3.x/prediction/... and the /api/predict/ aliases).

Why it exists: through Django's ASGI handler a prediction pays for the whole browser stack
(sessions, CSRF, auth, messages, htmx, WhiteNoise: sync middleware, so each request hops
between the event loop and a per-request thread several times) and a thread-sensitive context
with a fresh thread per request. That was ~40% of the server's CPU per prediction and held the
GIL the forward passes of concurrent requests wait for (bench/prediction_api.py). Here a
request is answered by `customvision.prediction.answer` in one hop to the default thread pool: the
same answer the Django view gives, for a fraction of the overhead.

It relies on Django's own pieces rather than copies of them:
- the URL resolver picks the route: a view marked `prediction_route` (customvision/prediction.py) is
  served here; any other path or method is handed to Django untouched;
- an ASGIRequest (headers only) gives the Host check (`get_host`: outside ALLOWED_HOSTS, Django
  answers 400) and `is_secure` (plain HTTP under SECURE_SSL_REDIRECT: Django redirects); both
  cases go to Django too;
- the response is a JsonResponse passed through SecurityMiddleware's and
  XFrameOptionsMiddleware's process_response, so it carries the headers they add;
- database connections are opened and closed (or kept, per CONN_MAX_AGE) around each request
  as Django's request_started/request_finished receivers do, in the thread that used them;
- an unexpected exception is logged on `django.request` and answered 500 in the API's JSON
  error shape; the server keeps serving.
What it drops is what the API never uses: sessions, CSRF (the API is key-authenticated and
csrf-exempt), messages, htmx, static files.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpResponse, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve

from customvision.prediction import (
    PredictionCall,
    answer,
    body_too_large,
    declared_size_error,
    max_body_bytes,
    prediction_call,
    response_headers,
)

logger = logging.getLogger("django.request")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PredictionFastLane:
    """Answers prediction requests itself; passes every other request to `app` (Django)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = _route(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if routed is None:
            await self.app(scope, receive, send)
            return
        request, route = routed
        source, ids = route["source"], route["ids"]
        refused = declared_size_error(request.META.get("CONTENT_LENGTH"), source, ids)
        if refused is not None:
            await _respond(send, request, *refused)
            return
        body = await _read_body(receive, max_body_bytes(source))
        if body is None:
            return  # the client went away
        if isinstance(body, int):  # a body without a declared length grew past the limit
            await _respond(send, request, *body_too_large(body, source, ids))
            return
        call = prediction_call(request, body=body, **route)
        try:
            status, payload = await asyncio.to_thread(_answer_in_thread, call)
        except Exception:
            logger.exception("Internal Server Error: %s", request.path)
            status = 500
            payload = {
                "code": "InternalServerError",
                "message": "The server could not answer this prediction; it is logged.",
            }
        await _respond(send, request, status, payload)


def _route(scope: Scope) -> tuple[ASGIRequest, dict[str, Any]] | None:
    """The request (headers only) and view arguments of a prediction Django would serve just
    as the lane does; None to let Django answer."""
    request = ASGIRequest(scope, io.BytesIO())
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    route = getattr(match.func, "prediction_route", None)
    if route is None:
        return None
    try:
        request.get_host()
    except DisallowedHost:
        return None
    if settings.SECURE_SSL_REDIRECT and not request.is_secure():
        return None
    return request, {**match.kwargs, **route}


def _answer_in_thread(call: PredictionCall) -> tuple[int, dict[str, Any]]:
    # What Django's request_started / request_finished receivers do, on this thread's
    # connections: drop ones past CONN_MAX_AGE or broken, keep the rest for the next request.
    close_old_connections()
    try:
        return answer(call)
    finally:
        close_old_connections()


async def _read_body(receive: Receive, limit: int) -> bytes | int | None:
    """The whole body; None if the client disconnected; the size read so far (an int) once it
    passes `limit` (a chunked upload declares no length up front)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _unused(request: Any) -> HttpResponse:  # middleware wants a next handler; never called
    raise AssertionError


async def _respond(send: Send, request: ASGIRequest, status: int, payload: dict[str, Any]) -> None:
    response: HttpResponse = JsonResponse(payload, status=status, headers=response_headers(status))
    for middleware in (SecurityMiddleware(_unused), XFrameOptionsMiddleware(_unused)):
        response = middleware.process_response(request, response)
    body = response.content
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
    ]
    headers.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
