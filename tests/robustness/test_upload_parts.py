"""Every part of an upload gets a verdict at its own index, whatever its filename.

Before: parts with filename="", a non-UTF-8 filename or no filename were dropped by Django's
multipart parser (every later index shifted by one), and a 1,000-character filename failed the
whole request with 400 "Request max total header size exceeded".
"""

from __future__ import annotations

import io

import pytest
from django.http.multipartparser import MultiPartParser

from project.multipart import MAX_FILENAME_BYTES, SanitizingStream, safe_filename
from tests.conftest import make_image

pytestmark = pytest.mark.django_db

BOUNDARY = "----loupe-test-boundary"
LONG_NAME = "x" * 1000 + ".png"


def part(disposition: bytes, data: bytes, content_type: bytes = b"image/png") -> bytes:
    return (
        b"--" + BOUNDARY.encode() + b"\r\n"
        b"Content-Disposition: " + disposition + b"\r\n"
        b"Content-Type: " + content_type + b"\r\n\r\n" + data + b"\r\n"
    )


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"


def image(number: int) -> bytes:
    return make_image(300, 300, (number * 30, 90, 200 - number * 10))


def hostile_batch() -> bytes:
    return body(
        part(b'form-data; name="files"; filename="first.png"', image(0)),
        part(b'form-data; name="files"; filename=""', image(1)),
        part(b'form-data; name="files"', image(2)),
        part(b'form-data; name="files"; filename="caf\xe9 \xff.png"', image(3)),
        part(b'form-data; name="files"; filename="' + LONG_NAME.encode() + b'"', image(4)),
        part(b'form-data; name="files"; filename=""', b"", b"application/octet-stream"),
        part(b'form-data; name="files"; filename="last.png"', image(6)),
    )


def verdicts(report: dict) -> dict[int, dict]:
    return {item["index"]: item for item in report["accepted"] + report["rejected"]}


def test_api_gives_every_part_a_verdict_at_its_own_index(api_client, project, users):
    api_client.force_authenticate(users["annotator"])
    response = api_client.generic(
        "POST",
        f"/api/projects/{project.pk}/images/upload/",
        hostile_batch(),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert response.status_code == 201, response.content[:500]
    report = response.json()
    by_index = verdicts(report)
    assert sorted(by_index) == [0, 1, 2, 3, 4, 5, 6]
    assert by_index[0]["filename"] == "first.png" and "image_id" in by_index[0]
    assert by_index[1]["filename"] == "file 2"
    assert by_index[2]["filename"] == "file 3"
    assert by_index[3]["filename"] == "caf\ufffd \ufffd.png"
    long_name = by_index[4]["filename"]
    assert long_name.endswith("….png") and len(long_name.encode()) <= MAX_FILENAME_BYTES
    assert by_index[5]["code"] == "empty"
    assert by_index[6]["filename"] == "last.png"
    assert report["accepted_count"] == 6
    assert project.images.count() == 6
    # Each stored image is the one sent at its index (no shift): compare sizes on disk.
    for index in (0, 1, 2, 3, 4, 6):
        stored = project.images.get(pk=by_index[index]["image_id"])
        assert stored.size_bytes == len(image(index))


def test_upload_page_without_javascript_keeps_the_batch_mates(client, project, users):
    client.force_login(users["annotator"])
    response = client.generic(
        "POST",
        f"/projects/{project.pk}/upload/",
        hostile_batch(),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        HTTP_X_CSRFTOKEN="unused",  # the test client skips CSRF checks
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "file 2" in page and "last.png" in page
    assert project.images.count() == 6


def test_text_fields_and_other_file_fields_are_read_as_before(rf):
    data = body(
        part(b'form-data; name="tag_ids"', b"12", b"text/plain"),
        part(b'form-data; name="archive"; filename=""', b"", b"application/octet-stream"),
        part(b'form-data; name="note"; filename="a&amp;b.txt"', b"hello", b"text/plain"),
    )
    post, files = _parse(data)
    assert post.getlist("tag_ids") == ["12"]
    assert "archive" not in files  # an empty file input stays "no file", as Django reads it
    assert files["note"].name == "a&amp;b.txt"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1000])
def test_the_rewrite_survives_any_chunking_of_the_body(chunk):
    data = hostile_batch()
    _post, files = _parse(data, chunk=chunk)
    uploads = files.getlist("files")
    assert [f.name for f in uploads][:3] == ["first.png", "file 2", "file 3"]
    assert len(uploads) == 7
    assert uploads[6].read() == image(6)
    assert uploads[4].read() == image(4)


def test_file_bytes_that_look_like_headers_pass_through_unchanged():
    tricky = b"\r\n\r\nContent-Disposition: form-data; name=x\r\n\r\n--not-the-boundary"
    _post, files = _parse(body(part(b'form-data; name="files"; filename="t.bin"', tricky)))
    assert files["files"].read() == tricky


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.png", "a.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\b.jpg", "b.jpg"),
        ("tab\there.png", "tabhere.png"),
        ("..", ""),
        ("", ""),
    ],
)
def test_safe_filename(raw, expected):
    assert safe_filename(raw) == expected


def test_safe_filename_shortens_multibyte_names_by_bytes_keeping_the_extension():
    name = safe_filename("é" * 900 + ".jpeg")
    assert name.endswith("….jpeg")
    assert len(name.encode()) <= MAX_FILENAME_BYTES


class _Trickle(io.RawIOBase):
    """A body that arrives `chunk` bytes at a time, as from a slow client."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data, self._chunk = data, chunk

    def read(self, size: int = -1) -> bytes:
        taken = self._data[: min(self._chunk, size if size > 0 else self._chunk)]
        self._data = self._data[len(taken) :]
        return taken


def _parse(data: bytes, chunk: int = 65536):
    stream = SanitizingStream(_Trickle(data, chunk), BOUNDARY.encode())
    meta = {
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        "CONTENT_LENGTH": str(len(data)),
    }
    from django.core.files.uploadhandler import MemoryFileUploadHandler

    return MultiPartParser(meta, stream, [MemoryFileUploadHandler()]).parse()
