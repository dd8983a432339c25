"""Decoding: EXIF orientation, any mode to RGB, small images upscaled, unreadable bytes named."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.ml.conftest import encode
from training.ml.backbones import get_backbone
from training.ml.errors import DatasetCorrupt
from training.ml.preprocessing import eval_transform, load_rgb, train_transform


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    upright = load_rgb(encode(image, "JPEG", exif=exif, quality=95))
    assert upright.size == (20, 40)
    top_pixel = upright.getpixel((10, 5))
    assert top_pixel[2] > 200 and top_pixel[0] < 60  # the blue half is now on top


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_any_mode_becomes_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = Image.new(mode, (10, 10))
    assert load_rgb(encode(image, fmt)).mode == "RGB"


def test_small_images_are_upscaled_to_the_backbone_size() -> None:
    spec = get_backbone("lite0")
    tensor = eval_transform(spec)(Image.new("RGB", (30, 50), (10, 200, 30)))
    assert tensor.shape == (3, 224, 224)
    # Normalised with the spec's mean/std: 200/255 -> (0.784 - 0.5) / 0.5.
    assert float(tensor[1].mean()) == pytest.approx((200 / 255 - 0.5) / 0.5, abs=1e-3)
    augmented = train_transform(spec)(Image.new("RGB", (30, 50)))
    assert augmented.shape == (3, 224, 224)


def test_jpeg_draft_keeps_at_least_the_requested_size() -> None:
    data = encode(Image.new("RGB", (1600, 1200), (1, 2, 3)), "JPEG")
    assert min(load_rgb(data, draft_size=224).size) >= 224
    assert load_rgb(data, draft_size=224).size[0] < 1600


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", encode(Image.new("RGB", (64, 64)))[:60]]
)
def test_unreadable_bytes_raise_dataset_corrupt_with_the_key(data: bytes) -> None:
    with pytest.raises(DatasetCorrupt) as caught:
        load_rgb(data, key="abc123")
    assert caught.value.item_key == "abc123"
    assert "abc123" in caught.value.message
