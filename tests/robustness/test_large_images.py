"""Large images and the web process's memory (issue 16, item 9).

A 49-megapixel PNG was accepted by the prediction API and took the web process to 1.35 GB RSS.
Now a prediction decodes at most LOUPE_MAX_PREDICTION_PIXELS (a JPEG classified counts at the
reduced scale it is decoded at), uploads decode a JPEG at 1/8 scale, and every decode in the
process holds the bytes it keeps alive in one budget (LOUPE_DECODE_BUDGET_MB). bench/memory.py
measures the RSS.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image as PILImage

from labeling.models import Image
from labeling.services import ingest
from labeling.services.ingest import FileRejected, decode_budget, inspect_header, inspect_image
from predictions.models import Prediction
from predictions.services.predict import ImageTooManyPixels, quick_test
from tests.predictions import conftest as prediction_fixtures
from tests.predictions.conftest import RED, colour_png
from tests.predictions.test_api import post
from training.ml.decode import load_rgb

# The prediction tests' fixtures: a really trained, published colour model and its key.
_isolated = prediction_fixtures._isolated
colour_artifact = prediction_fixtures.colour_artifact
trained = prediction_fixtures.trained

pytestmark = pytest.mark.django_db


def big_png(width: int, height: int) -> bytes:
    """A flat grey PNG: a few hundred kB on the wire, width x height pixels once decoded."""
    buffer = io.BytesIO()
    PILImage.new("L", (width, height), 128).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def photo_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), RED).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_a_49_megapixel_png_is_refused_by_the_prediction_api_with_its_reason(trained):
    data = big_png(7000, 7000)
    assert len(data) < 4 * 1024 * 1024  # under the byte limit: only the pixel count refuses it
    response = post(trained.url(), data, trained.key)
    assert response.status_code == 413, response.content
    body = response.json()
    assert body["code"] == "BadRequestImageDimensions"
    assert body["reason"] == "too_many_pixels"
    assert body["max_pixels"] == 25_000_000
    assert "7000 x 7000" in body["message"] and body["message"].endswith(".")
    assert Prediction.objects.count() == 0 and not Image.objects.filter(is_training=False)


def test_a_12_megapixel_jpeg_is_still_classified_and_stored(trained):
    response = post(trained.url(), photo_jpeg(4000, 3000), trained.key)
    assert response.status_code == 200, response.content
    assert response.json()["predictions"][0]["tagName"] == "red"
    stored = Prediction.objects.get().image
    assert (stored.width, stored.height) == (4000, 3000)


def test_the_prediction_pixel_limit_is_a_setting(trained, settings):
    settings.LOUPE_MAX_PREDICTION_PIXELS = 1000
    response = post(trained.url(), colour_png(RED, size=40), trained.key)  # 1,600 pixels
    assert response.status_code == 413 and response.json()["max_pixels"] == 1000
    assert post(trained.url(), colour_png(RED, size=30), trained.key).status_code == 200


def test_a_jpeg_counts_at_the_scale_it_is_decoded_at(trained, settings):
    # 4000 x 3000 decodes at 1/8 (500 x 375) for a 224 px backbone: far under 1 million.
    settings.LOUPE_MAX_PREDICTION_PIXELS = 1_000_000
    assert post(trained.url(), photo_jpeg(4000, 3000), trained.key).status_code == 200
    assert post(trained.url(), big_png(1200, 1000), trained.key).status_code == 413


def test_the_quick_test_refuses_the_49_megapixel_png_too(trained):
    with pytest.raises(ImageTooManyPixels) as refused:
        quick_test(
            project=trained.project,
            iteration_id=trained.iteration.pk,
            by=trained.admin,
            store=True,
            data=big_png(7000, 7000),
            name="huge.png",
        )
    assert refused.value.http_status == 413
    assert Prediction.objects.count() == 0


def test_upload_checks_a_large_jpeg_at_reduced_scale_with_its_full_size():
    inspection = inspect_image(photo_jpeg(4000, 3000))
    assert (inspection.width, inspection.height) == (4000, 3000)
    truncated = photo_jpeg(800, 600)
    with pytest.raises(FileRejected) as rejected:
        inspect_image(truncated[: len(truncated) // 2])
    assert rejected.value.code == "corrupt"


def test_two_images_over_half_the_budget_decode_one_after_the_other(settings):
    settings.LOUPE_DECODE_BUDGET_MB = 100
    events: list[str] = []

    def decode(name: str) -> None:
        with decode_budget(80_000_000):
            events.append(f"{name} start")
            time.sleep(0.05)
            events.append(f"{name} end")

    threads = [threading.Thread(target=decode, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert [e.split()[1] for e in events] == ["start", "end", "start", "end"]
    # Small ones share it: 4 x 20 MB run together.
    small = 20_000_000
    with decode_budget(small), decode_budget(small), decode_budget(small), decode_budget(small):
        pass


def test_concurrent_large_decodes_never_hold_more_than_the_budget_together(settings):
    """Four threads decoding real 1,000 x 1,000 PNGs, each holding what a prediction holds
    (2 x 4 bytes a pixel: 8 MB), under a 20 MB budget: at most two at once, never 24 MB."""
    settings.LOUPE_DECODE_BUDGET_MB = 20
    data = big_png(1000, 1000)
    need = 1000 * 1000 * 2 * ingest.DECODED_BYTES_PER_PIXEL
    lock = threading.Lock()
    held = [0]
    most = [0]
    running = [0]
    most_running = [0]

    def predict_like() -> None:
        with decode_budget(need):
            with lock:
                held[0] += need
                running[0] += 1
                most[0] = max(most[0], held[0])
                most_running[0] = max(most_running[0], running[0])
            picture = load_rgb(data)
            assert picture.size == (1000, 1000)
            time.sleep(0.05)  # the model's run, with the picture alive
            with lock:
                held[0] -= need
                running[0] -= 1

    threads = [threading.Thread(target=predict_like) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert most[0] <= 20_000_000
    assert most_running[0] == 2  # they share what fits, they do not all wait for one


def test_readme_lists_the_decode_budget_setting_with_its_default(settings):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = re.search(r"^\| `LOUPE_DECODE_BUDGET_MB` \| ([\d,]+) MB \|", readme, re.MULTILINE)
    assert row is not None
    assert int(row.group(1).replace(",", "")) == settings.LOUPE_DECODE_BUDGET_MB


def test_readme_lists_the_prediction_pixel_setting_with_its_default(settings):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = re.search(r"^\| `LOUPE_MAX_PREDICTION_PIXELS` \| ([\d,]+) \|", readme, re.MULTILINE)
    assert row is not None
    assert int(row.group(1).replace(",", "")) == settings.LOUPE_MAX_PREDICTION_PIXELS


def _png_with_trailing_exif(width: int, height: int, orientation: int) -> bytes:
    """A PNG whose eXIf chunk comes after the image data (legal; Pillow finds it on load)."""
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    content = exif.tobytes()[len(b"Exif\0\0") :]
    chunk = struct.pack(">I", len(content)) + b"eXIf" + content
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + content) & 0xFFFFFFFF)
    data = big_png(width, height)
    return data[:-12] + chunk + data[-12:]  # before IEND


def test_the_header_check_of_a_png_reads_no_pixels():
    # Pillow's PNG getexif() decodes the whole image; the header check must not.
    data = big_png(2000, 1000)
    image = ingest._open_header(data)
    inspection = ingest._upright_inspection(image, data)
    assert image.tile, "the pixels were decoded"
    assert (inspection.width, inspection.height) == (2000, 1000)


def test_a_png_rotated_by_a_trailing_exif_chunk_reports_its_upright_size():
    data = _png_with_trailing_exif(300, 200, orientation=6)
    header = inspect_header(data)
    assert (header.width, header.height) == (200, 300)
    assert (inspect_image(data).width, inspect_image(data).height) == (200, 300)
