"""How images reach the ML core: a content hash and a way to open the bytes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class ImageRef:
    """One image: `key` is its sha256 (content hash), `open()` returns a binary file object.

    The Django side passes a function that opens the file through Django storage, so the worker
    never needs to share the web process's disk.
    """

    key: str
    open: Callable[[], BinaryIO]
