"""Pooled backbone embeddings: a durable cache and the pipeline that fills it.

The cache is keyed on (image content hash, backbone name, PREPROCESSING_VERSION), so a retrain
after adding 50 images embeds only those 50, and a change of preprocessing never reuses stale
vectors. One small file per embedding, written to a temporary name and `os.replace`d, so a worker
killed mid-write never leaves a half vector and concurrent workers never corrupt each other.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .backbones import build_feature_extractor, get_backbone
from .data import ImageRef, read_bytes
from .errors import Cancelled
from .inference import Engine, build_engine
from .preprocessing import PREPROCESSING_VERSION, load_rgb, resize_center_crop

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _never_stop() -> bool:
    return False


def _ignore_count(done: int, total: int) -> None:
    return None


class FeatureCache:
    """Embeddings on disk under `root/<backbone>/p<preprocessing version>/<key[:2]>/<key>.f32`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _dir(self, backbone: str) -> Path:
        get_backbone(backbone)  # unknown names fail loudly instead of creating stray folders
        return self.root / backbone / f"p{PREPROCESSING_VERSION}"

    def _path(self, base: Path, key: str) -> Path:
        # Keys become file names: refuse anything that could escape the cache folder.
        if not _KEY_PATTERN.match(key):
            raise ValueError(f"Feature cache key {key!r} must be a hex digest or similar token.")
        return base / key[:2] / f"{key}.f32"

    def get_many(self, keys: Sequence[str], backbone: str) -> dict[str, np.ndarray]:
        """The cached embeddings among `keys` (missing or damaged ones are simply absent)."""
        base = self._dir(backbone)
        dim = get_backbone(backbone).feature_dim
        found: dict[str, np.ndarray] = {}
        for key in dict.fromkeys(keys):
            try:
                raw = self._path(base, key).read_bytes()
            except FileNotFoundError:
                continue
            if len(raw) != dim * 4:  # a foreign or truncated file: treat as a miss, re-embed
                continue
            found[key] = np.frombuffer(raw, dtype="<f4").copy()
        return found

    def put_many(self, vectors: Mapping[str, np.ndarray], backbone: str) -> None:
        """Store embeddings atomically (tmp file + os.replace)."""
        base = self._dir(backbone)
        dim = get_backbone(backbone).feature_dim
        for key, vector in vectors.items():
            array = np.asarray(vector, dtype="<f4").reshape(-1)
            if array.shape != (dim,):
                raise ValueError(f"Embedding for {key} has shape {array.shape}, expected ({dim},).")
            path = self._path(base, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".f32")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(array.tobytes())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


_ENGINE_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _stock_engine_cached(backbone: str, threads: int | None, device: str) -> Engine:
    spec = get_backbone(backbone)
    return build_engine(build_feature_extractor(backbone), spec, threads=threads, device=device)


def stock_engine(backbone: str, *, threads: int | None = None, device: str = "cpu") -> Engine:
    """The stock pretrained extractor for `backbone` in the fastest engine, built once per
    thread count and device (see build_engine)."""
    with _ENGINE_LOCK:
        return _stock_engine_cached(backbone, threads, device)


def _read_and_resize(ref: ImageRef, size: int) -> np.ndarray:
    data = read_bytes(ref)
    image = load_rgb(data, key=ref.key, draft_size=size)
    return resize_center_crop(image, size)


def decoded_batches(
    refs: Sequence[ImageRef], *, size: int, batch_size: int, workers: int = 2
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start index, uint8 (B,size,size,3)) batches in order, decoding in a thread pool.

    PIL releases the GIL while decoding and resizing, so the pool prepares the next batches while
    the caller runs the forward pass. At most two batches are in flight to bound memory.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: list[Future[np.ndarray]] = []
        next_submit = 0
        lookahead = batch_size * 2
        try:
            for start in range(0, len(refs), batch_size):
                while next_submit < min(len(refs), start + lookahead):
                    pending.append(pool.submit(_read_and_resize, refs[next_submit], size))
                    next_submit += 1
                count = min(batch_size, len(refs) - start)
                batch = np.stack([future.result() for future in pending[:count]])
                del pending[:count]
                yield start, batch
        finally:
            for future in pending:
                future.cancel()


def forward_pixels(engine: Engine, pixels: np.ndarray, backbone: str) -> np.ndarray:
    """uint8 (B,S,S,3) -> float32 (B, D) through `engine` (which normalises in its graph)."""
    return np.ascontiguousarray(engine(pixels), dtype=np.float32)


def embed_images(
    refs: Sequence[ImageRef],
    *,
    backbone: str,
    cache: FeatureCache,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] = _ignore_count,
    should_stop: Callable[[], bool] = _never_stop,
    device: str = "cpu",
) -> np.ndarray:
    """Embeddings (N, D) float32 for `refs`, in their order, computing only cache misses.

    New embeddings are written to the cache after every batch, so work done before a crash or a
    cancellation is kept. Raises DatasetCorrupt naming the first unreadable image (in `refs`
    order), Cancelled when `should_stop()` turns true.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    spec = get_backbone(backbone)
    total = len(refs)
    known = cache.get_many([ref.key for ref in refs], backbone)
    missing = list({ref.key: ref for ref in refs if ref.key not in known}.values())
    done = total - sum(1 for ref in refs if ref.key not in known)
    on_progress(done, total)
    if missing:
        engine = stock_engine(backbone, device=device)
        batches = decoded_batches(missing, size=spec.input_size, batch_size=batch_size)
        for start, pixels in batches:
            if should_stop():
                raise Cancelled("Embedding was cancelled.")
            vectors = forward_pixels(engine, pixels, backbone)
            chunk = missing[start : start + len(pixels)]
            fresh = {ref.key: vector for ref, vector in zip(chunk, vectors, strict=True)}
            cache.put_many(fresh, backbone)
            known.update(fresh)
            done += sum(1 for ref in refs if ref.key in fresh)
            on_progress(min(done, total), total)
    result = np.zeros((total, spec.feature_dim), dtype=np.float32)
    for row, ref in enumerate(refs):
        result[row] = known[ref.key]
    return result


def embed_pil(
    engine: Engine, images: Sequence[Image.Image], backbone: str, batch_size: int = 32
) -> np.ndarray:
    """Embeddings (N, D) for already-decoded images with `engine` (no cache)."""
    spec = get_backbone(backbone)
    out = np.zeros((len(images), spec.feature_dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pixels = np.stack(
            [resize_center_crop(image.convert("RGB"), spec.input_size) for image in chunk]
        )
        out[start : start + len(chunk)] = forward_pixels(engine, pixels, backbone)
    return out
