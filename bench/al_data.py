"""A labeled photo set for the active-learning benchmark, built from scikit-image's photographs.

Ten classes, one per photograph shipped with scikit-image (nothing is downloaded): four colour
scenes (astronaut, cat, coffee, rocket), a motorcycle scene, a grey portrait (camera) and four
grey textures/surfaces (grass, gravel, brick, moon). Every image is a random crop of 15-50% of
the photo's shorter side, randomly flipped and rotated a little, with brightness, contrast and
saturation jitter, turned grey one time in five (so colour alone does not give the class away),
sometimes blurred, and saved as a 128 px JPEG of random quality. Crops of one photo show very
different things (a face, a flag, a sleeve), and the grey textures look alike, so a linear head
on frozen features needs a good share of the labels to separate them: a useful learning curve.

The set is generated deterministically from `seed`: the same bytes (and so the same content
hashes, the FeatureCache keys) on every run.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from training.ml.data import ImageRef

CLASS_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "camera",
    "grass",
    "gravel",
    "brick",
    "moon",
)
IMAGE_SIZE = 128


@dataclass(frozen=True)
class PhotoSet:
    refs: list[ImageRef]
    labels: np.ndarray  # (N,) int class ids
    class_names: tuple[str, ...]


def _photo(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if isinstance(array, tuple):  # stereo pairs: keep the left view
        array = array[0]
    return Image.fromarray(np.asarray(array)).convert("RGB")


def _augmented_crop(photo: Image.Image, rng: np.random.Generator) -> bytes:
    width, height = photo.size
    side = int(min(width, height) * rng.uniform(0.15, 0.5))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    crop = photo.crop((left, top, left + side, top + side))
    crop = crop.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR)
    # Trim the corners the rotation left black.
    margin = side // 7
    crop = crop.crop((margin, margin, side - margin, side - margin))
    crop = crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.7, 1.3)))
    crop = ImageEnhance.Contrast(crop).enhance(float(rng.uniform(0.7, 1.3)))
    crop = ImageEnhance.Color(crop).enhance(float(rng.uniform(0.6, 1.4)))
    if rng.random() < 0.2:
        crop = crop.convert("L").convert("RGB")
    if rng.random() < 0.3:
        crop = crop.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=int(rng.integers(60, 95)))
    return buffer.getvalue()


def _ref(data: bytes) -> ImageRef:
    return ImageRef(key=hashlib.sha256(data).hexdigest(), open=lambda: io.BytesIO(data))


def photo_set(per_class: int = 150, seed: int = 0) -> PhotoSet:
    """`per_class` augmented crops of each of the ten photographs, class by class."""
    rng = np.random.default_rng(seed)
    refs: list[ImageRef] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_PHOTOS):
        photo = _photo(name)
        for _ in range(per_class):
            refs.append(_ref(_augmented_crop(photo, rng)))
            labels.append(label)
    return PhotoSet(refs, np.array(labels, dtype=np.int64), CLASS_PHOTOS)


# Backgrounds for the glyph set: every photograph scikit-image ships that is at least 256 px.
BACKGROUND_PHOTOS = (
    *CLASS_PHOTOS,
    "coins",
    "page",
    "text",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "logo",
    "horse",
    "clock",
    "cell",
)
GLYPHS = "0123456789"
# Font size of the digit in a 128 px image. At 22-40 px a linear probe on lite0 features stayed
# near chance (18% at 220 labels); at 70-100 px it reaches ~35% at 220 labels, ~45% at 400.
GLYPH_SIZE_PX = (70, 100)


def _glyph_image(glyph: str, background: Image.Image, rng: np.random.Generator) -> bytes:
    """A digit in a random colour, stroke and angle composed onto a random crop of a photograph."""
    from PIL import ImageDraw, ImageFont

    width, height = background.size
    side = int(min(width, height) * rng.uniform(0.2, 0.6))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    canvas = background.crop((left, top, left + side, top + side)).resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR
    )
    size = int(rng.integers(*GLYPH_SIZE_PX))
    font = ImageFont.load_default(size=size)
    mark = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(mark).text(
        (size // 2, size // 4), glyph, fill=255, font=font, stroke_width=int(rng.integers(1, 3))
    )
    mark = mark.rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR)
    mark = mark.crop(mark.getbbox())
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    x = int(rng.integers(0, IMAGE_SIZE - mark.width + 1))
    y = int(rng.integers(0, IMAGE_SIZE - mark.height + 1))
    canvas.paste(Image.new("RGB", mark.size, colour), (x, y), mark)
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
    return buffer.getvalue()


def glyph_set(per_class: int = 150, seed: int = 0) -> PhotoSet:
    """The hard set: ten digit classes, each drawn onto a random crop of one of twenty
    photographs, so the backbone's features mostly describe the background (a linear probe on
    frozen lite0 features stays well below 60%)."""
    rng = np.random.default_rng(seed)
    backgrounds = [_photo(name) for name in BACKGROUND_PHOTOS]
    refs: list[ImageRef] = []
    labels: list[int] = []
    for label, glyph in enumerate(GLYPHS):
        for _ in range(per_class):
            background = backgrounds[int(rng.integers(len(backgrounds)))]
            refs.append(_ref(_glyph_image(glyph, background, rng)))
            labels.append(label)
    return PhotoSet(refs, np.array(labels, dtype=np.int64), tuple(GLYPHS))


def folder_set(root: str) -> PhotoSet:
    """A folder-per-tag dataset: every readable image file under `root/<tag>/`."""
    from pathlib import Path

    refs: list[ImageRef] = []
    labels: list[int] = []
    names = sorted(
        p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if len(names) < 2:
        raise SystemExit(f"{root} needs at least two tag folders; found {len(names)}.")
    for label, name in enumerate(names):
        for path in sorted((Path(root) / name).iterdir()):
            if path.suffix.lower() not in {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}:
                continue
            refs.append(_ref(path.read_bytes()))
            labels.append(label)
    return PhotoSet(refs, np.array(labels, dtype=np.int64), tuple(names))


def mosaic_set(count: int = 1500, seed: int = 0) -> PhotoSet:
    """The multilabel set: 2x2 mosaics of augmented crops of the ten photographs; an image's
    tags are the photographs it shows (one to four of them). `labels` is (N, 10) of 0/1."""
    rng = np.random.default_rng(seed)
    photos = [_photo(name) for name in CLASS_PHOTOS]
    half = IMAGE_SIZE // 2
    refs: list[ImageRef] = []
    labels = np.zeros((count, len(CLASS_PHOTOS)), dtype=np.int64)
    for row in range(count):
        canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
        # Two or three photographs per mosaic, so tags co-occur in varied combinations.
        shown = rng.choice(len(CLASS_PHOTOS), size=int(rng.integers(2, 4)), replace=False)
        cells = [int(c) for c in shown] + [int(c) for c in rng.choice(shown, 4 - shown.size)]
        for position, cls in enumerate(rng.permutation(cells)):
            tile = Image.open(io.BytesIO(_augmented_crop(photos[int(cls)], rng)))
            tile = tile.convert("RGB").resize((half, half), Image.Resampling.BILINEAR)
            canvas.paste(tile, ((position % 2) * half, (position // 2) * half))
            labels[row, int(cls)] = 1
        buffer = io.BytesIO()
        canvas.save(buffer, format="JPEG", quality=90)
        refs.append(_ref(buffer.getvalue()))
    return PhotoSet(refs, labels, CLASS_PHOTOS)


# --- Detection (issue 14, item 4) -------------------------------------------------------------


def detection_set(out_dir: Path, count: int = 200, seed: int = 0) -> list[Any]:
    """Object cut-outs (cat, cup, rocket, astronaut, motorcycle) pasted onto other photographs,
    with their boxes: bench/detection_data.py's generator (written once, reused), as
    (path, boxes normalised (tag, left, top, width, height)) samples."""
    from bench.detection_data import generate

    return generate(out_dir, images=count, seed=seed)
