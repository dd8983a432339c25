"""Downloads go out a chunk at a time through the ASGI application the server runs.

Django's ASGI handler reads a synchronous streaming body whole before sending any of it, so a
2 GB export once cost the web process 2 GB (project/streaming.py). These requests go through
project.asgi.application with a hand-made receive/send pair, to see each http.response.body
message as uvicorn would. The view runs on a request thread with its own database connection,
hence transactional tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client

from project.asgi import application
from project.streaming import CHUNK_BYTES
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db(transaction=True)

FILE_BYTES = 16 * 1024 * 1024


@dataclass
class Served:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    bodies: list[tuple[int, bool]] = field(default_factory=list)  # (length, more_body)
    sha256: Any = field(default_factory=hashlib.sha256)


@pytest.fixture
def large_image(project) -> tuple[str, str, bytes]:
    """The /media/ URL of an image whose stored file is FILE_BYTES long, its path, its bytes."""
    image = ImageFactory(project=project)
    data = os.urandom(FILE_BYTES)
    path = default_storage.path(image.file.name)
    with open(path, "wb") as fh:
        fh.write(data)
    return image.file.url, path, data


@pytest.fixture
def session_cookie(users) -> str:
    client = Client()
    client.force_login(users["annotator"])
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def serve(path: str, cookie: str, *, disconnect_after: int | None = None) -> Served:
    """GET `path` through the ASGI app; the client hangs up after `disconnect_after` body
    messages (None: never). Bodies are hashed and dropped, as a socket would."""
    served = Served()
    hung_up = asyncio.Event()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            served.status = message["status"]
            served.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            served.sha256.update(body)
            served.bodies.append((len(body), message.get("more_body", False)))
            if disconnect_after is not None and len(served.bodies) >= disconnect_after:
                hung_up.set()

    asyncio.run(application(scope, receive, send))
    return served


def open_fds_to(path: str) -> list[str]:
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                fds.append(fd)
        except OSError:  # closed while we looked
            continue
    return fds


def test_a_large_media_file_goes_out_a_chunk_at_a_time(large_image, session_cookie):
    url, _, data = large_image
    serve(url, session_cookie)  # first request: imports and caches stay out of the figure

    tracemalloc.start()
    try:
        served = serve(url, session_cookie)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert served.status == 200
    assert served.headers["content-length"] == str(FILE_BYTES)
    assert served.headers["content-type"] == "image/png"
    first_length, first_more = served.bodies[0]
    assert first_more and 0 < first_length <= CHUNK_BYTES
    assert served.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    # Read whole, the file alone is FILE_BYTES on the heap (measured: 16.9 MB peak before
    # project.streaming); streamed, a few chunks (0.2 MB).
    assert peak_bytes < FILE_BYTES // 4, f"peak {peak_bytes / 1e6:.1f} MB while serving"


def test_a_client_that_hangs_up_stops_the_reading_and_the_file_is_closed(
    large_image, session_cookie
):
    url, path, _ = large_image

    served = serve(url, session_cookie, disconnect_after=1)

    assert served.status == 200
    assert len(served.bodies) < FILE_BYTES // CHUNK_BYTES // 2
    assert open_fds_to(path) == []
