"""How images reach the ML core: a content hash and a way to open the bytes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .errors import DatasetCorrupt


@dataclass(frozen=True)
class ImageRef:
    """One image: `key` is its sha256 (content hash), `open()` returns a binary file object.

    The Django side passes a function that opens the file through Django storage, so the worker
    never needs to share the web process's disk.
    """

    key: str
    open: Callable[[], BinaryIO]


def read_bytes(ref: ImageRef) -> bytes:
    """The image's encoded bytes; DatasetCorrupt naming it when its file cannot be opened."""
    try:
        with ref.open() as handle:
            return handle.read()
    except DatasetCorrupt:  # the opener already named the problem (a file missing from storage)
        raise
    except OSError as err:
        raise DatasetCorrupt(
            f"Image {ref.key} could not be opened ({type(err).__name__}: {err}).",
            item_key=ref.key,
            problem="its file could not be opened",
        ) from err
