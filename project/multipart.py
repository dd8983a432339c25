"""Multipart bodies made safe for Django's parser, part by part, while they stream in.

Django's multipart parser silently drops a file part whose filename is empty, missing or not
UTF-8, and refuses the WHOLE request (400 "Request max total header size exceeded") when one
part's headers pass 1 KB, e.g. a 1,000-character filename. An upload of 50 images then loses
its other 49, or reports them at the wrong index. `MultipartSanitizerMiddleware` rewrites each
part's headers before Django reads them:

- a filename is decoded (bad UTF-8 becomes U+FFFD), stripped of any path and of characters
  Django would drop, and shortened to MAX_FILENAME_BYTES keeping its extension;
- a part of an upload field (UPLOAD_FIELDS: the batch upload's `files`) with no usable filename
  gets the placeholder `file <n>`, so it reaches ingest and gets its own verdict at its own
  index (`empty`, `not_an_image`, ...) instead of vanishing;
- headers other than Content-Disposition and Content-Type are dropped, long ones cut, so a part's
  headers always fit Django's 1 KB limit.

Only header blocks are touched; file bytes stream through unchanged, a chunk at a time (memory
stays at one chunk plus one header block, whatever the body's size).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Protocol

from django.http import HttpRequest, HttpResponse
from django.utils.http import parse_header_parameters

# Multipart fields whose every part is a file, even one sent without a filename.
UPLOAD_FIELDS = frozenset({"files"})
# A part's rewritten headers stay well under Django's MAX_TOTAL_HEADER_SIZE (1024 bytes).
MAX_FILENAME_BYTES = 240  # also under Image.original_name's 255 characters
MAX_CONTENT_TYPE_BYTES = 150
_MAX_EXTENSION_CHARS = 16
# A header block longer than this is passed through untouched (Django then refuses it).
_MAX_HEADER_BLOCK_BYTES = 64 * 1024
_CHUNK_BYTES = 64 * 1024


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class MultipartSanitizerMiddleware:
    """Wraps the body stream of every multipart request before anything parses it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        boundary = _boundary(request.META.get("CONTENT_TYPE", ""))
        stream = getattr(request, "_stream", None)
        if boundary and stream is not None and not getattr(request, "_read_started", False):
            request._stream = SanitizingStream(stream, boundary)  # type: ignore[attr-defined]
        return self.get_response(request)


def _boundary(content_type: str) -> bytes | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    try:
        _, params = parse_header_parameters(content_type)
    except ValueError:
        return None
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200 or not boundary.isascii():
        return None
    return boundary.encode("ascii")


class SanitizingStream:
    """A file-like `read()` over a multipart body that rewrites each part's header block."""

    def __init__(self, stream: _Readable, boundary: bytes) -> None:
        self._source = stream
        self._first = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._in = bytearray()
        self._out = bytearray()
        self._state = "start"  # start, body, after_delimiter, headers, epilogue
        self._eof = False
        self._parts_per_field: dict[str, int] = {}

    def read(self, size: int = -1, /) -> bytes:
        while (size is None or size < 0 or len(self._out) < size) and not self._done():
            self._step()
        if size is None or size < 0:
            size = len(self._out)
        data = bytes(self._out[:size])
        del self._out[:size]
        return data

    def readline(self, size: int = -1, /) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n") and (size < 0 or len(line) < size):
            byte = self.read(1)
            if not byte:
                break
            line += byte
        return bytes(line)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> object:
        # Anything else a body stream offers (Django's LimitedStream, ASGI's spooled file).
        if name == "_source":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self._source, name)

    def _done(self) -> bool:
        return self._eof and not self._in

    def _pull(self) -> bool:
        """Read more input; False at the end of the body."""
        if self._eof:
            return False
        chunk = self._source.read(_CHUNK_BYTES)
        if not chunk:
            self._eof = True
            return False
        self._in += chunk
        return True

    def _emit(self, count: int) -> None:
        self._out += self._in[:count]
        del self._in[:count]

    def _step(self) -> None:
        handler = getattr(self, f"_on_{self._state}")
        handler()

    def _on_start(self) -> None:
        if len(self._in) < len(self._first) and self._pull():
            return
        if self._in.startswith(self._first):
            self._emit(len(self._first))
            self._state = "after_delimiter"
        else:
            self._state = "body"  # a preamble: the first delimiter follows a CRLF

    def _on_body(self) -> None:
        found = self._in.find(self._delimiter)
        if found >= 0:
            self._emit(found + len(self._delimiter))
            self._state = "after_delimiter"
            return
        # Keep a tail that could be the start of a delimiter split across chunks.
        keep = len(self._delimiter) - 1
        if len(self._in) > keep:
            self._emit(len(self._in) - keep)
        if not self._pull():
            self._emit(len(self._in))

    def _on_after_delimiter(self) -> None:
        if len(self._in) < 2 and self._pull():
            return
        self._state = "epilogue" if self._in.startswith(b"--") else "headers"

    def _on_headers(self) -> None:
        end = self._in.find(b"\r\n\r\n")
        if end < 0:
            if len(self._in) > _MAX_HEADER_BLOCK_BYTES or not self._pull():
                self._state = "body"  # not a header block we understand: pass it through
            return
        block = bytes(self._in[:end])
        del self._in[: end + 4]
        self._out += self._rewrite(block) + b"\r\n\r\n"
        self._state = "body"

    def _on_epilogue(self) -> None:
        self._emit(len(self._in))
        self._pull()

    def _rewrite(self, block: bytes) -> bytes:
        # The block starts with the delimiter line's CRLF (and any padding before it).
        first, *lines = block.split(b"\r\n")
        kept = [first]
        for line in lines:
            name = line.partition(b":")[0].strip().lower()
            if name == b"content-disposition":
                kept.append(self._disposition(line))
            elif name == b"content-type":
                kept.append(line[:MAX_CONTENT_TYPE_BYTES])
        return b"\r\n".join(kept)

    def _disposition(self, line: bytes) -> bytes:
        text = line.decode("utf-8", errors="replace").partition(":")[2]
        try:
            kind, params = parse_header_parameters(text)
        except ValueError:  # e.g. an RFC 2231 value in an unknown charset
            kind, params = "form-data", _name_only(text)
        field = params.get("name")
        if kind != "form-data" or field is None or len(field) > 100:
            return line[:1000]
        filename = safe_filename(params.get("filename") or "")
        if not filename and field not in UPLOAD_FIELDS:
            # A text field, or an empty file input (filename=""): Django's own reading.
            return b'Content-Disposition: form-data; name="' + _quote_name(field) + b'"'
        number = self._parts_per_field[field] = self._parts_per_field.get(field, 0) + 1
        filename = filename or f"file {number}"
        return (
            b'Content-Disposition: form-data; name="'
            + _quote_name(field)
            + b'"; filename="'
            + _quote(filename)
            + b'"'
        )


def _name_only(text: str) -> dict[str, str]:
    for part in text.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "name":
            return {"name": value.strip().strip('"')}
    return {}


def _quote_name(value: str) -> bytes:
    return value.replace('"', "%22").encode("utf-8")


def _quote(value: str) -> bytes:
    # Django unescapes HTML entities in filenames: escape `&` so a name survives unchanged.
    return value.replace("&", "&amp;").replace('"', "%22").encode("utf-8")


def safe_filename(raw: str) -> str:
    """A filename Django keeps: no path, only printable characters, at most
    MAX_FILENAME_BYTES of UTF-8 (the extension kept); "" when nothing is left."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if char.isprintable()).strip()
    if name in {"", ".", ".."}:
        return ""
    if len(_quote(name)) <= MAX_FILENAME_BYTES:
        return name
    stem, extension = posixpath.splitext(name)
    if len(extension) > _MAX_EXTENSION_CHARS:
        stem, extension = name, ""
    budget = MAX_FILENAME_BYTES - len(_quote(extension)) - len("…".encode())
    while stem and len(_quote(stem)) > budget:
        stem = stem[: max(len(stem) - max(1, (len(_quote(stem)) - budget) // 4), 0)]
    return f"{stem}…{extension}"
