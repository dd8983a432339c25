"""Helpers for the ML core tests: real photographs as tiny in-memory datasets, no database."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.ml.backbones import BACKBONE_FOR_DOMAIN, get_backbone, register_backbone
from training.ml.data import ImageRef
from training.ml.features import FeatureCache


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def ref_for(data: bytes, opened: list[str] | None = None) -> ImageRef:
    """An ImageRef over bytes; `opened` records every key whose file was opened."""
    key = hashlib.sha256(data).hexdigest()

    def open_bytes() -> io.BytesIO:
        if opened is not None:
            opened.append(key)
        return io.BytesIO(data)

    return ImageRef(key=key, open=open_bytes)


def photo_dataset(
    per_class: int, size: int = 48, seed: int = 0
) -> tuple[list[ImageRef], np.ndarray]:
    """Random crops of three scikit-image photographs (cat, coffee, rocket) as JPEG refs."""
    import skimage.data

    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    rng = np.random.default_rng(seed)
    refs: list[ImageRef] = []
    rows: list[np.ndarray] = []
    for label, array in enumerate(photos):
        photo = Image.fromarray(array)
        width, height = photo.size
        for _ in range(per_class):
            side = int(min(width, height) * rng.uniform(0.5, 0.9))
            left = int(rng.integers(0, width - side))
            top = int(rng.integers(0, height - side))
            crop = photo.crop((left, top, left + side, top + side)).resize((size, size))
            refs.append(ref_for(encode(crop, quality=90)))
            rows.append(np.eye(3, dtype=np.float32)[label])
    return refs, np.stack(rows)


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_backbone() -> str:
    """The compact domain's backbone (Lite0's real weights, its embedding) at 64 px: same code
    paths as production, a tenth of the compute."""
    compact = get_backbone(BACKBONE_FOR_DOMAIN["general_compact"])
    register_backbone(dataclasses.replace(compact, name="lite0-64", input_size=64))
    return "lite0-64"


@pytest.fixture
def cache(tmp_path) -> FeatureCache:
    return FeatureCache(tmp_path / "features")
