"""Fetching an image from a URL the user gave, on the server, without becoming a proxy into
the network Loupe runs in (SSRF).

Used by the quick test's "image URL" option; a Custom Vision "classify image URL" endpoint
calls `fetch_image` too. The rules:

- http and https only, no credentials in the URL;
- the host is resolved once and *every* address it resolves to must be public (not private,
  loopback, link-local, multicast, reserved or unspecified), unless it lies in one of the
  networks an admin allowed with LOUPE_FETCH_ALLOW_NETWORKS (an intranet image server);
- the connection goes to the address that was checked (the request names the IP, with the
  original Host header and TLS server name), so a second DNS answer cannot swap in another;
- redirects are followed by hand, at most MAX_REDIRECTS, each target checked the same way;
- the body is read in chunks and cut off past `max_bytes`; the whole fetch has a deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urljoin

import httpx
from django.conf import settings

from project.errors import LoupeError

MAX_REDIRECTS = 3
_REDIRECTS = {301, 302, 303, 307, 308}
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadImageUrl(LoupeError):
    """The URL cannot be fetched (Custom Vision's code for a bad image URL)."""

    code = "BadRequestImageUrl"
    http_status = 400


class ImageUrlTooLarge(LoupeError):
    code = "BadRequestImageSizeBytes"
    http_status = 413


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    name: str  # the last segment of the final URL's path: the image's original name
    url: str  # the URL the bytes came from, after redirects


def fetch_image(url: str, *, max_bytes: int, timeout_s: float | None = None) -> FetchedImage:
    """GET `url` under the rules above. Raises BadImageUrl (reason in details) or
    ImageUrlTooLarge; never returns more than `max_bytes` bytes."""
    timeout = settings.LOUPE_FETCH_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    current = _parse(url)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            response = _open(client, current, _checked_address(current))
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    current = _parse(urljoin(str(current), response.headers["location"]))
                    continue
                if response.status_code != 200:
                    raise BadImageUrl(
                        f"The image URL answered HTTP {response.status_code}, not an image.",
                        reason="http_status",
                        upstream_status=response.status_code,
                    )
                data = _read_capped(response, max_bytes, deadline)
                return FetchedImage(data=data, name=_name_of(current), url=str(current))
            finally:
                response.close()
    raise BadImageUrl(
        f"The image URL redirects more than {MAX_REDIRECTS} times.", reason="too_many_redirects"
    )


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        raise BadImageUrl("This is not a valid URL.", reason="invalid") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadImageUrl("Give an http:// or https:// URL of an image.", reason="scheme")
    if parsed.userinfo:
        raise BadImageUrl("Image URLs with a user name or password are refused.", reason="userinfo")
    return parsed


def _checked_address(url: httpx.URL) -> _Address:
    """Resolve the host and refuse it unless every address is allowed; returns one of them."""
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolve(url.host, port)
    if not addresses:
        raise BadImageUrl(f"The host “{url.host}” does not resolve.", reason="unresolved")
    for address in addresses:
        if not is_allowed_address(address):
            raise BadImageUrl(
                f"The host “{url.host}” is a private, loopback or link-local address; Loupe "
                "only fetches images from public addresses.",
                reason="private_address",
            )
    return addresses[0]


def resolve(host: str, port: int) -> list[_Address]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    seen: dict[_Address, None] = {}
    for info in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"): the address itself is what the rule judges.
        seen[ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])] = None
    return list(seen)


def is_allowed_address(address: _Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback in IPv4 clothing
    if any(address in network for network in _allowed_networks()):
        return True
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _allowed_networks() -> tuple[_Network, ...]:
    return _parse_networks(settings.LOUPE_FETCH_ALLOW_NETWORKS)


@lru_cache(maxsize=4)
def _parse_networks(spec: str) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip())


def _open(client: httpx.Client, url: httpx.URL, address: _Address) -> httpx.Response:
    """Stream a GET to the checked address, naming the host in Host and the TLS server name."""
    pinned = url.copy_with(host=str(address))
    try:
        request = client.build_request(
            "GET",
            pinned,
            headers={
                "Host": url.netloc.decode("ascii"),
                "Accept": "image/*",
                # Compressed bodies would be decompressed past the size cap: ask for none.
                "Accept-Encoding": "identity",
            },
            extensions={"sni_hostname": url.host},
        )
        return client.send(request, stream=True)
    except httpx.TimeoutException:
        raise BadImageUrl("The image URL did not answer in time.", reason="timeout") from None
    except httpx.HTTPError as err:
        raise BadImageUrl(
            f"The image URL could not be fetched ({type(err).__name__}).", reason="unreachable"
        ) from None


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(size, max_bytes, at_least=True)
            # The client's timeout bounds each read; the deadline bounds a slow trickle.
            if time.monotonic() > deadline:
                raise BadImageUrl("The image URL did not answer in time.", reason="timeout")
            chunks.append(chunk)
    except httpx.TimeoutException:
        raise BadImageUrl("The image URL did not answer in time.", reason="timeout") from None
    except httpx.HTTPError as err:
        raise BadImageUrl(
            f"The image URL could not be read ({type(err).__name__}).", reason="unreachable"
        ) from None
    return b"".join(chunks)


def _too_large(size: int, max_bytes: int, *, at_least: bool = False) -> ImageUrlTooLarge:
    more = "more than " if at_least else ""
    return ImageUrlTooLarge(
        f"The image at this URL is {more}{size / 1_000_000:.1f} MB; predictions take at most "
        f"{max_bytes / 1_000_000:.1f} MB per image.",
        max_bytes=max_bytes,
    )


def _name_of(url: httpx.URL) -> str:
    name = unquote(url.path).rstrip("/").rsplit("/", 1)[-1]
    return (name or url.host)[:255]
