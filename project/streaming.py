"""The one way to send a file: `stream_file`, read in chunks as the client takes them.

Why not a plain FileResponse: under ASGI, Django serves a response whose iterator is
synchronous by reading it whole first (`sync_to_async(list)` in the handler), so a 2 GB export
cost the web process 2 GB of memory before its first byte left. Here the body is an async
iterator that reads one chunk at a time off the event loop, so memory stays at a few chunks
whatever the file's size, and a client that goes away stops the reading.

The headers stay FileResponse's own (`set_headers`: Content-Length, Content-Type by file name,
Content-Disposition with the file name). No Range, ETag or Last-Modified: the views never sent
them. Under WSGI (Django's live test server) the file still goes out through the server's
`wsgi.file_wrapper`, as FileResponse's does.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.http import FileResponse, StreamingHttpResponse

from project.storage import MediaStream

# Django's ASGI handler sets this block size on every FileResponse it serves (ASGIHandler
# .chunk_size); one chunk per http.response.body message.
CHUNK_BYTES = 64 * 1024


def stream_file(
    source: IO[bytes] | MediaStream | str | os.PathLike[str],
    *,
    content_type: str | None = None,
    as_attachment: bool = False,
    filename: str = "",
) -> FileResponse:
    """A response that sends `source` in chunks of CHUNK_BYTES and closes it when done.

    `source` is a file opened by the caller (`default_storage.open(name, "rb")`), an object
    storage stream (project.storage.MediaStream) or a local path. The file is closed at the end
    of the body, when the client disconnects, or when the response is closed unsent.
    """
    if isinstance(source, MediaStream):
        response = _AsyncFileResponse(
            _ChunkFile(source.chunks),
            content_type=content_type,
            as_attachment=as_attachment,
            filename=filename,
        )
        if source.size is not None:
            response["Content-Length"] = str(source.size)
        return response
    if isinstance(source, str | os.PathLike):
        source = open(source, "rb")  # noqa: SIM115 -- the response closes it
    return _AsyncFileResponse(
        source, content_type=content_type, as_attachment=as_attachment, filename=filename
    )


class _AsyncFileResponse(FileResponse):
    block_size = CHUNK_BYTES

    def _set_streaming_content(self, value: Any) -> None:
        if not hasattr(value, "read"):  # an iterator set later (middleware, the test client)
            super()._set_streaming_content(value)
            return
        self.file_to_stream = value  # for wsgi.file_wrapper
        if hasattr(value, "close"):
            self._resource_closers.append(value.close)
        self.set_headers(value)
        StreamingHttpResponse._set_streaming_content(self, _read_chunks(value, self.block_size))


async def _read_chunks(file: IO[bytes], chunk_bytes: int) -> AsyncIterator[bytes]:
    # Thread-sensitive: inside a request, Django runs these in the request's own thread, the one
    # that opened the file and that later runs response.close(), so a read never races a close.
    read = sync_to_async(file.read)
    try:
        while chunk := await read(chunk_bytes):
            yield chunk
    finally:
        # On disconnect the handler cancels the send and closes the response too; closing here
        # as well frees the file (or the bucket's connection) as soon as the reading stops.
        await sync_to_async(file.close)()


class _ChunkFile:
    """An iterator of chunks with the `read`/`close` of a file, so one response class serves
    both; `read` returns the next chunk whatever size is asked (the size is a hint here)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, size: int = -1) -> bytes:
        # An empty chunk would read as the end of the file.
        return next((chunk for chunk in self._chunks if chunk), b"")

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
