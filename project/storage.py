"""Storage helpers that hold on local disk and on S3-compatible object storage alike.

The S3 backend itself is project/storage_s3.py, imported only when LOUPE_S3_BUCKET is set (boto3
costs the web process memory and start-up time it need not pay on one machine).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, default_storage


@dataclass(frozen=True)
class MediaStream:
    """A stored file read in chunks (object storage), for /media/ to pass on as it arrives."""

    chunks: Iterator[bytes]
    size: int | None
    content_type: str | None


def streams_from_object_storage(storage: Storage) -> bool:
    """Whether /media/ streams from this storage's `stream(name)` (object storage)."""
    return callable(getattr(storage, "stream", None))


def files_under(folder: str, *, storage: Storage | None = None) -> list[str]:
    """The names of every file below `folder`, at any depth; [] when there is no such folder."""
    storage = storage or default_storage
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:  # local disk; object storage lists an absent prefix as empty
        return []
    names = [f"{folder}/{name}" for name in files]
    for sub in folders:
        names.extend(files_under(f"{folder}/{sub}", storage=storage))
    return names


def replace_file(name: str, data: bytes, *, storage: Storage | None = None) -> None:
    """Write `name` whole in place, so a reader sees the old content or the new, never none.

    For files rewritten while others read them (a job's status.json): delete-then-save leaves a
    moment with no file, three requests long on object storage. There one PUT replaces the object
    atomically; on local disk a temporary file is renamed over the old one.
    """
    storage = storage or default_storage
    atomic_replace = getattr(storage, "atomic_replace", None)
    if atomic_replace is not None:  # object storage (project/storage_s3.py)
        atomic_replace(name, data)
        return
    if isinstance(storage, FileSystemStorage):  # a LazyObject passes isinstance through
        path = Path(storage.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(data)
        if storage.file_permissions_mode is not None:
            os.chmod(tmp.name, storage.file_permissions_mode)
        os.replace(tmp.name, path)
        return
    storage.delete(name)
    storage.save(name, ContentFile(data))
