"""The prediction API's fast lane: a small ASGI app in front of Django for POST /api/predict/.

Why it exists: through Django's ASGI handler a prediction pays for the whole browser stack
(sessions, CSRF, auth, messages, htmx, WhiteNoise: sync middleware, so each request hops
between the event loop and a per-request thread several times) and a thread-sensitive context
with a fresh thread per request. That was ~40% of the server's CPU per prediction and held the
GIL the forward passes of concurrent requests wait for (bench/prediction_api.py). Here a
request is parsed from the ASGI scope, answered by `predictions.api.answer` in one hop to the
default thread pool, and written back: the same answer the Django view gives, for a fraction of
the overhead.

What it keeps from Django's stack, and how:
- anything it does not handle exactly is handed to Django untouched: another path or method,
  a Host outside ALLOWED_HOSTS (Django answers 400), plain HTTP under SECURE_SSL_REDIRECT
  (Django redirects);
- the response headers SecurityMiddleware and XFrameOptionsMiddleware would add, read from the
  same settings;
- database connections are opened and closed (or kept, per CONN_MAX_AGE) around each request
  exactly as Django's request_started/request_finished handlers do, in the thread that used
  them;
- an unexpected exception is logged on `django.request` and answered 500 in the API's JSON
  error shape; the server keeps serving.
What it drops is what the API never uses: sessions, CSRF (the API is key-authenticated and
csrf-exempt), messages, htmx, static files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host

from predictions.api import MULTIPART_SLACK_BYTES, PredictionCall, answer, declared_size_error
from predictions.services.predict import CLASSIFY, DETECT, raise_too_large
from project.errors import LoupeError

logger = logging.getLogger("django.request")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The four routes of predictions/api_urls.py; `path` in the scope is already percent-decoded.
_ROUTE = re.compile(
    r"/api/predict/(?P<project_id>[0-9]+)/(?P<kind>classify|detect)/iterations/"
    r"(?P<publish_name>[^/]+)/image(?P<nostore>/nostore)?"
)


class PredictionFastLane:
    """Answers prediction requests itself; passes every other request to `app` (Django)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _ROUTE.fullmatch(scope["path"]) if scope["type"] == "http" else None
        headers = _headers(scope) if match is not None else {}
        if match is None or scope["method"] != "POST" or not _django_would_serve(scope, headers):
            await self.app(scope, receive, send)
            return
        refused = declared_size_error(headers.get("content-length"))
        if refused is not None:
            await _respond(send, scope, *refused)
            return
        try:
            body = await _read_body(receive)
        except LoupeError as err:  # a body without a declared length grew past the limit
            await _respond(send, scope, err.http_status, err.as_dict())
            return
        if body is None:
            return  # the client went away
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        call = PredictionCall(
            project_id=int(match["project_id"]),
            publish_name=match["publish_name"],
            kind=CLASSIFY if match["kind"] == CLASSIFY else DETECT,
            store=match["nostore"] is None,
            secret=headers.get("prediction-key"),
            content_type=headers.get("content-type", ""),
            body=body,
            application=query.get("application", [""])[-1],
        )
        try:
            status, payload = await asyncio.to_thread(_answer_in_thread, call)
        except Exception:
            logger.exception("Internal Server Error: %s", scope["path"])
            status, payload = (
                500,
                {
                    "code": "InternalServerError",
                    "message": "The server could not answer this prediction; it is logged.",
                },
            )
        await _respond(send, scope, status, payload)


def _answer_in_thread(call: PredictionCall) -> tuple[int, dict[str, Any]]:
    # What Django's request_started / request_finished receivers do, on this thread's
    # connections: drop ones past CONN_MAX_AGE or broken, keep the rest for the next request.
    close_old_connections()
    try:
        return answer(call)
    finally:
        close_old_connections()


def _headers(scope: Scope) -> dict[str, str]:
    # The last one wins on repeats, as in Django's request.META.
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _django_would_serve(scope: Scope, headers: dict[str, str]) -> bool:
    """False where Django would answer differently (bad Host, HTTPS redirect): let it."""
    if settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https":
        return False
    host = headers.get("host")
    if host is None:
        server = scope.get("server")
        host = server[0] if server else ""
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None if the client disconnected; ImageTooLarge past the limit (a
    chunked upload declares no length up front)."""
    limit = settings.LOUPE_MAX_PREDICTION_BYTES + MULTIPART_SLACK_BYTES
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise_too_large(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to a response, per settings."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        value = policy if isinstance(policy, str) else ",".join(policy)
        headers.append((b"referrer-policy", value.encode("latin-1")))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        coop = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
        headers.append((b"cross-origin-opener-policy", coop.encode("latin-1")))
    if settings.SECURE_HSTS_SECONDS and scope.get("scheme") == "https":
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append((b"strict-transport-security", hsts.encode("latin-1")))
    headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.upper().encode("latin-1")))
    return headers


async def _respond(send: Send, scope: Scope, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("latin-1")),
        *_security_headers(scope),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
