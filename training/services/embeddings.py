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
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from labeling.models import Project
from training.ml.ranking import compact_embeddings
from training.models import iteration_folder

logger = logging.getLogger(__name__)


def _name(iteration_id: int) -> str:
    return f"{iteration_folder(iteration_id)}/train_embeddings.npy"


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


def cached_embeddings(
    project: Project, hashes: list[str], *, embed_missing: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The backbone embeddings of the images with these sha256 hashes, from the feature cache
    (embedding the ones it lacks when `embed_missing`): (matrix, the rows of `hashes` it
    covers), or (None, None) when none is known. Unreadable images are left out."""
    from training.ml.features import FeatureCache
    from training.services.iterations import backbone_for

    backbone = backbone_for(project)
    cache = FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR)
    known = cache.get_many(hashes, backbone)
    missing = [h for h in dict.fromkeys(hashes) if h not in known]
    if missing and embed_missing:
        known.update(_embed(project, missing, backbone, cache))
    rows = [i for i, h in enumerate(hashes) if h in known]
    if not rows:
        return None, None
    matrix = np.stack([known[hashes[i]] for i in rows]).astype(np.float32)
    return matrix, np.array(rows, dtype=np.int64)


def _embed(project: Project, hashes: list[str], backbone: str, cache: Any) -> dict[str, Any]:
    """Embed images the cache lacks; an unreadable image is left out (the check goes on)."""
    from training.ml.data import ImageRef
    from training.ml.errors import DatasetCorrupt
    from training.ml.features import embed_images

    files = dict(project.images.training().filter(sha256__in=hashes).values_list("sha256", "file"))

    def opener(name: str) -> Any:
        return lambda: default_storage.open(name, "rb")

    refs = [ImageRef(key=h, open=opener(files[h])) for h in hashes if h in files]
    found: dict[str, Any] = {}
    while refs:
        try:
            vectors = embed_images(refs, backbone=backbone, cache=cache)
        except DatasetCorrupt as err:  # drop the named image and embed the rest
            bad = getattr(err, "item_key", None)
            logger.warning("Skipping unreadable image %s while embedding: %s", bad, err)
            refs = [r for r in refs if r.key != bad] if bad else []
            continue
        found.update({r.key: v for r, v in zip(refs, vectors, strict=True)})
        break
    return found
