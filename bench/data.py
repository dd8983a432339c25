"""Benchmark datasets made from the photographs scikit-image ships (nothing is downloaded).

    from bench.data import photo_classes, fine_grained_textures
    items = photo_classes(Path("/tmp/x"), images=1000, classes=10)   # [(path, class id), ...]

`photo_classes`: class c is random crops of photograph c (cat, coffee, rocket, astronaut, ...)
with flips and colour/brightness jitter, saved as 640x480 JPEG like a phone upload scaled down.
`fine_grained_textures`: classes differ only by a faint periodic texture (vertical or
horizontal stripes, square or diagonal grid) laid over random photo crops, a cue ImageNet
features mostly discard ("frozen features are not enough"). Files are written once per (kind,
count, seed) and reused by later runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from training.ml.data import ImageRef

PHOTOS = [
    "chelsea",
    "coffee",
    "rocket",
    "astronaut",
    "hubble_deep_field",
    "immunohistochemistry",
    "camera",
    "coins",
    "brick",
    "gravel",
    "clock",
    "moon",
]


def _photos(count: int) -> list[Image.Image]:
    import skimage.data

    return [
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in PHOTOS[:count]
    ]


def _random_view(photo: Image.Image, rng: np.random.Generator, out: tuple[int, int]) -> Image.Image:
    width, height = photo.size
    scale = rng.uniform(0.35, 0.8)
    crop_w = int(width * scale)
    crop_h = min(height, int(crop_w * out[1] / out[0]))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    view = photo.crop((left, top, left + crop_w, top + crop_h)).resize(
        out, Image.Resampling.BILINEAR
    )
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.7, 1.3))
    return ImageEnhance.Color(view).enhance(rng.uniform(0.6, 1.4))


def photo_classes(
    root: Path, *, images: int, classes: int = 10, seed: int = 0, size: tuple[int, int] = (640, 480)
) -> list[tuple[Path, int]]:
    """`images` JPEG files spread evenly over `classes` photographs, in random order."""
    folder = root / f"photos-{classes}c-{images}-s{seed}-{size[0]}x{size[1]}"
    labels = np.random.default_rng(seed).permutation(np.arange(images) % classes)
    paths = [folder / f"{index:05d}.jpg" for index in range(images)]
    if not all(path.exists() for path in paths):
        folder.mkdir(parents=True, exist_ok=True)
        photos = _photos(classes)
        rng = np.random.default_rng(seed + 1)
        for path, label in zip(paths, labels, strict=True):
            _random_view(photos[label], rng, size).save(path, "JPEG", quality=88)
    return list(zip(paths, (int(label) for label in labels), strict=True))


def _texture(size: tuple[int, int], label: int, rng: np.random.Generator) -> np.ndarray:
    """A faint periodic texture in [-1, 1]; every class is invariant to horizontal flips, so
    the standard flip augmentation never turns one class into another."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
    period = rng.uniform(6, 10)
    jitter = np.deg2rad(rng.uniform(-6, 6))

    def wave(angle: float) -> np.ndarray:
        theta = angle + jitter
        phase = rng.uniform(0, 2 * np.pi)
        return np.sin(2 * np.pi * (xs * np.cos(theta) + ys * np.sin(theta)) / period + phase)

    quarter = np.pi / 4
    patterns = {
        0: lambda: wave(0.0),  # vertical stripes
        1: lambda: wave(2 * quarter),  # horizontal stripes
        2: lambda: (wave(0.0) + wave(2 * quarter)) / 2,  # square grid
        3: lambda: (wave(quarter) + wave(3 * quarter)) / 2,  # diagonal grid
    }
    return patterns[label % 4]()[..., None]


def fine_grained_textures(
    root: Path,
    *,
    images: int,
    classes: int = 4,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    contrast: float = 18.0,
) -> list[tuple[Path, int]]:
    """Random photo crops under a faint texture (vertical, horizontal, grid, diagonal grid)
    that is the class; the photo content is noise drawn independently of the class."""
    folder = root / f"textures-v2-{classes}c-{images}-s{seed}-c{contrast:g}"
    labels = np.random.default_rng(seed).permutation(np.arange(images) % classes)
    paths = [folder / f"{index:05d}.jpg" for index in range(images)]
    if not all(path.exists() for path in paths):
        folder.mkdir(parents=True, exist_ok=True)
        photos = _photos(len(PHOTOS))
        rng = np.random.default_rng(seed + 1)
        for path, label in zip(paths, labels, strict=True):
            base = _random_view(photos[int(rng.integers(len(photos)))], rng, size)
            pixels = np.asarray(base, dtype=np.float32) + contrast * _texture(size, label, rng)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)
    return list(zip(paths, (int(label) for label in labels), strict=True))


def refs_for(items: list[tuple[Path, int]]) -> list[ImageRef]:
    """ImageRefs keyed by content hash, opening the files lazily (as Django storage would)."""
    refs = []
    for path, _ in items:
        key = hashlib.sha256(path.read_bytes()).hexdigest()
        refs.append(ImageRef(key=key, open=lambda p=path: open(p, "rb")))  # noqa: SIM115
    return refs


def one_hot(items: list[tuple[Path, int]], classes: int) -> np.ndarray:
    labels = np.array([label for _, label in items])
    return np.eye(classes, dtype=np.float32)[labels]
