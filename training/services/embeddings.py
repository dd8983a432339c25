"""The training set's embeddings, kept with each iteration for "Most gain".

The ranking rule needs to know where the labeled images sit (training.ml.ranking: a region no
label covers yet is worth more than one that is full of labels). Quick training computes the
backbone embedding of every training image anyway; it stores them here, compacted to 128 float16
values (256 bytes an image, 1.3 MB at 5,000), as `iterations/<id>/train_embeddings.npy` through
storage, written once. Readers cache them per process, keyed by the file's size and time.

Iterations trained before this file existed (or by advanced training, whose fine-tuned features
predictions do not share) have none; "Most gain" then treats every region as uncovered.
"""

from __future__ import annotations

import io
import logging
from functools import lru_cache

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from training.ml.ranking import compact_embeddings

logger = logging.getLogger(__name__)


def _name(iteration_id: int) -> str:
    return f"iterations/{iteration_id}/train_embeddings.npy"


def save_training_embeddings(iteration_id: int, features: np.ndarray) -> None:
    """Store the (N, D) backbone features of an iteration's training images, compacted."""
    buffer = io.BytesIO()
    np.save(buffer, compact_embeddings(features).astype("<f2"), allow_pickle=False)
    name = _name(iteration_id)
    if default_storage.exists(name):  # a retried attempt: replace, never keep a stale set
        default_storage.delete(name)
    default_storage.save(name, ContentFile(buffer.getvalue()))


def training_embeddings(iteration_id: int) -> np.ndarray | None:
    """(N, 128) float32 compact embeddings of the iteration's training images, or None."""
    name = _name(iteration_id)
    try:
        # The file's identity is part of the cache key: a retried attempt rewrites it.
        stamp = (default_storage.size(name), default_storage.get_modified_time(name))
    except (FileNotFoundError, OSError):
        return None
    return _read(name, stamp)


@lru_cache(maxsize=8)
def _read(name: str, stamp: tuple[object, ...]) -> np.ndarray | None:
    try:
        with default_storage.open(name, "rb") as handle:
            array = np.load(io.BytesIO(handle.read()), allow_pickle=False)
    except (OSError, ValueError) as err:  # a damaged file: rank without coverage
        logger.warning("Unreadable training embeddings %s: %s", name, err)
        return None
    if array.ndim != 2:
        return None
    result: np.ndarray = array.astype(np.float32)
    return result
