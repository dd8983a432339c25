"""Decoding and resizing with Pillow and numpy only: what every model input starts from.

Kept free of torch on purpose: the web process predicts through ONNX Runtime (training.ml.
serving) and must decode exactly as training does without importing torch (500 MB of RSS).
training.ml.preprocessing re-exports these, so training and serving share one definition.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DatasetCorrupt

# Everything Pillow raises for a file it cannot decode (truncated, not an image, pixel bomb...).
DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


def load_rgb(
    source: bytes | BinaryIO, *, key: str = "", draft_size: int | None = None
) -> Image.Image:
    """Decode `source` into an EXIF-upright RGB image.

    `draft_size` lets JPEG decode at a reduced scale (DCT scaling) while both sides stay at
    least that many pixels: decoding a 12 MP photo to feed a 224 px network is mostly waste.
    Raises DatasetCorrupt(item_key=key) when the bytes are not a readable image.
    """
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with Image.open(stream) as image:
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            # In place, and no copy of an RGB picture: at most two full-size pictures are alive
            # at once (a 24 MP PNG is 96 MB in Pillow), never the three of a copy, a rotation
            # and a conversion. The pixels are the same as those copies' (tests/ml/test_decode).
            ImageOps.exif_transpose(image, in_place=True)
            if image.mode == "RGB":
                return image._new(image.im)  # the same pixels, detached from the file
            return image.convert("RGB")
    except DECODE_ERRORS as err:
        name = key or "the image"
        raise DatasetCorrupt(
            f"Image {name} could not be read as a picture ({type(err).__name__}: {err}).",
            item_key=key,
            problem="it is not a picture that can be decoded (a damaged file or an unsupported "
            "format)",
        ) from err


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Scale the shorter side to `size` (upscaling small images) and cut the centre square.

    Returns uint8 (size, size, 3). Resizing only the crop box (`box=`) skips the pixels the crop
    would throw away.
    """
    width, height = image.size
    side = min(width, height)
    left = (width - side) / 2
    top = (height - side) / 2
    box = (left, top, left + side, top + side)
    resized = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.uint8)


def detector_size(
    width_px: int, height_px: int, shorter_px: int, longer_px: int
) -> tuple[int, int]:
    """The (width, height) a detector sees: the shorter side to `shorter_px` unless the longer
    side would pass `longer_px` (small images are upscaled)."""
    scale = min(shorter_px / min(width_px, height_px), longer_px / max(width_px, height_px))
    return max(1, int(width_px * scale)), max(1, int(height_px * scale))
