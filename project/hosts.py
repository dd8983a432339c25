"""Which hosts Loupe trusts: for absolute URLs and for websocket origins.

`ALLOWED_HOSTS` (LOUPE_ALLOWED_HOSTS) is what Django serves; unset, it is the local names only.
An admin may still set `*` (any Host header is served). A Host matched only by `*` is whatever
the client sent, so:

- absolute URLs (the API's `next` links and image URLs, the prediction endpoint shown on the
  keys page) use the request's host only when the admin named it; otherwise they stay
  root-relative (`/api/...`), and a forged Host is never echoed back;
- a websocket is accepted from a page of this site only: an Origin listed in
  CSRF_TRUSTED_ORIGINS, one whose host the admin named in ALLOWED_HOSTS, or the very host the
  socket connects to (when that host is allowed). Another site's page, which would carry the
  user's cookie, is refused. A client that sends no Origin is not a browser (browsers always
  send one on a websocket handshake) and carries no one else's cookie: it is let through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

# What LOUPE_ALLOWED_HOSTS means when it is unset: this machine, by name or loopback address.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def named_hosts() -> list[str]:
    """ALLOWED_HOSTS without the `*` wildcard: the host patterns the admin actually named."""
    return [host for host in settings.ALLOWED_HOSTS if host != "*"]


def is_named_host(host: str) -> bool:
    """Whether `host` ("name" or "name:port") matches a host pattern the admin named."""
    domain, _port = split_domain_port(host.lower())
    return bool(domain) and validate_host(domain, named_hosts())


def absolute_url(request: HttpRequest, location: str) -> str:
    """`location` as an absolute URL on the request's host when that host is a named one;
    otherwise `location` unchanged (root-relative), so a forged Host header is never echoed."""
    if urlsplit(location).netloc:  # already absolute (e.g. a storage's own URL)
        return location
    if is_named_host(request.get_host()):
        return request.build_absolute_uri(location)
    return location


def _trusted_origin(origin: str, trusted: Iterable[str]) -> bool:
    """Django's CSRF_TRUSTED_ORIGINS rule: exact, or `https://*.example.com` for subdomains."""
    parsed = urlsplit(origin)
    for entry in trusted:
        if entry.lower() == origin:
            return True
        allowed = urlsplit(entry.lower())
        subdomains = allowed.netloc[1:] if allowed.netloc.startswith("*.") else None
        if (
            subdomains
            and allowed.scheme == parsed.scheme
            and is_same_domain(parsed.netloc, subdomains)
        ):
            return True
    return False


def websocket_origin_allowed(origin: str | None, host: str | None) -> bool:
    """Whether a websocket handshake with this Origin and Host headers may go on (see above)."""
    if origin is None:
        return True
    origin = origin.strip().lower()
    parsed = urlsplit(origin)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        return False  # "null" (sandboxed frames, file: pages) and anything malformed
    if _trusted_origin(origin, settings.CSRF_TRUSTED_ORIGINS):
        return True
    if is_named_host(parsed.netloc):
        return True
    if not host:
        return False
    host = host.strip().lower()
    domain, _port = split_domain_port(host)
    return parsed.netloc == host and bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


class SiteOriginValidator:
    """ASGI middleware: closes a websocket handshake whose Origin is not this site's (see
    `websocket_origin_allowed`) before Channels' auth or a consumer runs."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers", ()))
            origin, host = headers.get(b"origin"), headers.get(b"host")
            allowed = websocket_origin_allowed(
                origin.decode("latin-1") if origin is not None else None,
                host.decode("latin-1") if host is not None else None,
            )
            if not allowed:
                return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
