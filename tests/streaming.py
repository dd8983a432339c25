"""Reading streamed downloads in tests.

Downloads are async iterators (project/streaming.py), which Django's sync test client cannot
join with `b"".join(response.streaming_content)`; `body_of` reads them through the event loop.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync


def body_of(response: Any) -> bytes:
    """The whole body of a streamed response (a download) from the test client."""
    assert response.streaming, "expected a streamed download"
    assert response.is_async, "a download must stream asynchronously (project.streaming)"

    async def join() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(join)()
