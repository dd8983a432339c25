"""Fetching an image from a URL (predictions.services.fetch): public addresses only, every
resolved address and every redirect checked, size and time capped. A local server stands in
for the web: 127.0.0.1 is refused by the rule, so the allow path lists loopback networks in
LOUPE_FETCH_ALLOW_NETWORKS, as an admin would list an intranet image server."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from predictions.services import fetch
from predictions.services.fetch import BadImageUrl, ImageUrlTooLarge, fetch_image
from tests.conftest import make_image
from tests.image_server import serve

PNG = make_image(24, 24)
MAX = 100_000


def png(body: bytes = PNG) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "image/png"}, body


def redirect(to: str) -> tuple[int, dict[str, str], bytes]:
    return 302, {"Location": to}, b""


@pytest.fixture
def allow(settings):
    def allow_networks(spec: str) -> None:
        settings.LOUPE_FETCH_ALLOW_NETWORKS = spec

    allow_networks("")
    return allow_networks


def test_an_allowed_address_is_fetched_with_the_files_name(allow):
    allow("127.0.0.0/8")
    with serve({"/photos/red%20apple.png": png()}) as base:
        fetched = fetch_image(f"{base}/photos/red%20apple.png", max_bytes=MAX)
    assert fetched.data == PNG
    assert fetched.name == "red apple.png"


def test_loopback_is_refused_before_any_request_when_not_allowed(allow):
    with serve({"/a.png": png()}) as base:
        with pytest.raises(BadImageUrl) as refused:
            fetch_image(f"{base}/a.png", max_bytes=MAX)
        assert refused.value.details["reason"] == "private_address"
        assert "public addresses" in refused.value.message


def test_a_redirect_from_an_allowed_host_to_a_private_one_is_refused(allow):
    # 127.0.0.2 is allowed (the "public" side); it redirects to 127.0.0.1, which is not.
    allow("127.0.0.2/32")
    hits: list[str] = []

    def secret(handler) -> None:
        hits.append(handler.path)
        handler.send_response(200)
        handler.end_headers()

    with serve({"/secret.png": secret}) as private_base:
        allowed = serve({"/a.png": redirect(f"{private_base}/secret.png")}, host="127.0.0.2")
        with allowed as base, pytest.raises(BadImageUrl) as refused:
            fetch_image(f"{base}/a.png", max_bytes=MAX)
    assert refused.value.details["reason"] == "private_address"
    assert hits == []  # never connected to the private side


def test_three_redirects_are_followed_and_a_fourth_is_refused(allow):
    allow("127.0.0.0/8")
    routes = {
        "/1": redirect("/2"),
        "/2": redirect("/3"),
        "/3": redirect("/final.png"),
        "/final.png": png(),
        "/0": redirect("/1"),
    }
    with serve(routes) as base:
        assert fetch_image(f"{base}/1", max_bytes=MAX).name == "final.png"
        with pytest.raises(BadImageUrl) as refused:
            fetch_image(f"{base}/0", max_bytes=MAX)
    assert refused.value.details["reason"] == "too_many_redirects"


def test_every_resolved_address_must_be_public(allow, monkeypatch):
    def resolve_to(*addresses: str):
        def getaddrinfo(host, port, *args, **kwargs):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

        return getaddrinfo

    connected: list[object] = []
    monkeypatch.setattr(fetch.httpx.Client, "send", lambda *a, **k: connected.append(a))
    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolve_to("93.184.216.34", "10.0.0.5"))
    with pytest.raises(BadImageUrl) as refused:
        fetch_image("http://images.example/a.png", max_bytes=MAX)
    assert refused.value.details["reason"] == "private_address"
    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolve_to("169.254.169.254"))
    with pytest.raises(BadImageUrl):
        fetch_image("http://metadata.example/latest/", max_bytes=MAX)
    assert connected == []


def test_the_connection_goes_to_the_checked_address_with_the_hosts_name(allow, monkeypatch):
    # A second DNS answer cannot swap the address: the request is sent to the checked IP.
    allow("127.0.0.0/8")
    answers = iter(["127.0.0.1", "10.9.9.9"])
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "images.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    hosts: list[str] = []

    def image(handler) -> None:
        hosts.append(handler.headers["Host"])
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(PNG)))
        handler.end_headers()
        handler.wfile.write(PNG)

    with serve({"/a.png": image}) as base:
        port = base.rsplit(":", 1)[1]
        fetched = fetch_image(f"http://images.test:{port}/a.png", max_bytes=MAX)
    assert fetched.data == PNG
    assert hosts == [f"images.test:{port}"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(allow, address):
    assert not fetch.is_allowed_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(allow, address):
    assert fetch.is_allowed_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://example.com/a.png", "scheme"),
        ("not a url", "scheme"),
        ("http://user:secret@example.com/a.png", "userinfo"),
    ],
)
def test_only_plain_http_and_https_urls(allow, url, reason):
    with pytest.raises(BadImageUrl) as refused:
        fetch_image(url, max_bytes=MAX)
    assert refused.value.details["reason"] == reason


def test_a_body_past_the_cap_is_refused_declared_or_streamed(allow):
    allow("127.0.0.0/8")

    def streamed(handler) -> None:  # no Content-Length: the cap must cut the read itself
        handler.protocol_version = "HTTP/1.0"
        handler.send_response(200)
        handler.end_headers()
        for _ in range(50):
            handler.wfile.write(b"x" * 10_000)

    big = png(b"x" * (MAX + 1))
    with serve({"/big.png": big, "/stream.png": streamed}) as base:
        for path in ("/big.png", "/stream.png"):
            with pytest.raises(ImageUrlTooLarge) as refused:
                fetch_image(f"{base}{path}", max_bytes=MAX)
            assert refused.value.http_status == 413


def test_a_slow_server_times_out(allow):
    allow("127.0.0.0/8")

    def slow(handler) -> None:
        time.sleep(1.5)
        handler.send_response(200)
        handler.end_headers()

    with serve({"/slow.png": slow}) as base:
        started = time.monotonic()
        with pytest.raises(BadImageUrl) as refused:
            fetch_image(f"{base}/slow.png", max_bytes=MAX, timeout_s=0.3)
    assert refused.value.details["reason"] == "timeout"
    assert time.monotonic() - started < 1.4


def test_an_error_status_is_reported(allow):
    allow("127.0.0.0/8")
    with serve({}) as base, pytest.raises(BadImageUrl) as refused:
        fetch_image(f"{base}/missing.png", max_bytes=MAX)
    assert refused.value.details == {"reason": "http_status", "upstream_status": 404}
