"""load_rgb decodes without the copies it used to make (issue 16, item 9): same pixels.

The reference is load_rgb as it was: a rotated copy (exif_transpose) and then a converted copy
or a plain copy, three full-size pictures alive at once for a large PNG. The model sees
resize_center_crop of the result, so equal pictures mean equal predictions.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from training.ml.decode import load_rgb, resize_center_crop


def copying_load_rgb(data: bytes, draft_size: int | None = None) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        upright = ImageOps.exif_transpose(image)
        return upright.convert("RGB") if upright.mode != "RGB" else upright.copy()


def encoded(mode: str, fmt: str, orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(7)
    bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
    if mode == "P":
        picture = Image.fromarray(rng.integers(0, 255, (90, 130, 3), np.uint8)).quantize(16)
    else:
        array = rng.integers(0, 255, (90, 130, bands[mode]), np.uint8)
        picture = Image.fromarray(array.squeeze(-1) if bands[mode] == 1 else array, mode)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    picture.save(buffer, format=fmt, exif=exif.tobytes()) if orientation else picture.save(
        buffer, format=fmt
    )
    return buffer.getvalue()


CASES = [
    ("RGB", "PNG", None),
    ("RGBA", "PNG", None),
    ("LA", "PNG", None),
    ("L", "PNG", None),
    ("P", "PNG", None),
    ("RGBA", "PNG", 6),
    ("RGB", "PNG", 3),
    ("RGB", "JPEG", 8),
    ("L", "JPEG", None),
    ("P", "GIF", None),
    ("RGBA", "WEBP", None),
]


@pytest.mark.parametrize(("mode", "fmt", "orientation"), CASES)
@pytest.mark.parametrize("draft_size", [None, 32])
def test_load_rgb_gives_the_pixels_of_the_copying_decode(mode, fmt, orientation, draft_size):
    data = encoded(mode, fmt, orientation)
    expected = copying_load_rgb(data, draft_size)
    picture = load_rgb(data, draft_size=draft_size)
    assert picture.mode == "RGB"
    assert picture.size == expected.size
    if orientation in (6, 8):
        assert picture.size[0] < picture.size[1]  # the rotation happened (130 x 90 stored)
    assert np.array_equal(np.asarray(picture), np.asarray(expected))
    # What a classifier and a detector are fed is therefore the same too.
    assert np.array_equal(resize_center_crop(picture, 24), resize_center_crop(expected, 24))


def test_the_picture_outlives_the_decoded_file():
    # load_rgb returns an RGB picture sharing the decoded pixels (no copy); closing the file's
    # image at the end of its `with` must not take them away.
    data = encoded("RGB", "PNG")
    picture = load_rgb(data)
    assert np.array_equal(np.asarray(picture), np.asarray(copying_load_rgb(data)))
    picture.load()
    assert picture.getpixel((0, 0)) == copying_load_rgb(data).getpixel((0, 0))
