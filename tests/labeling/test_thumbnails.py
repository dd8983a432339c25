"""Thumbnails: the task function called directly, and once by a real worker against Redis."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from labeling.models import Image
from labeling.tasks import make_thumbnails
from tests.conftest import make_image
from tests.factories import ImageFactory
from tests.worker import wait_for


def thumbnail_of(image: Image) -> PILImage.Image:
    image.refresh_from_db()
    assert image.thumbnail.name, f"image {image.pk} has no thumbnail"
    with default_storage.open(image.thumbnail.name, "rb") as fh:
        thumb = PILImage.open(io.BytesIO(fh.read()))
        thumb.load()
    return thumb


def image_with(content: bytes, **kwargs) -> Image:
    return ImageFactory(content=content, **kwargs)


@pytest.mark.django_db
def test_thumbnail_fits_the_setting_as_a_jpeg(settings):
    settings.LOUPE_THUMBNAIL_PX = 64
    image = image_with(make_image(640, 480, fmt="JPEG"))
    result = make_thumbnails([image.pk])
    assert result["made"] == [image.pk]
    thumb = thumbnail_of(image)
    assert image.thumbnail.name == f"thumbnails/{image.project_id}/{image.pk}.jpg"
    assert thumb.format == "JPEG" and thumb.mode == "RGB"
    assert thumb.size == (64, 48)


@pytest.mark.django_db
def test_thumbnail_applies_exif_orientation(settings):
    settings.LOUPE_THUMBNAIL_PX = 64
    # Left half red, right half blue, stored landscape with orientation 6 (show rotated 90 CW).
    picture = PILImage.new("RGB", (80, 40), (255, 0, 0))
    picture.paste((0, 0, 255), (40, 0, 80, 40))
    exif = PILImage.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    image = image_with(buffer.getvalue())
    make_thumbnails([image.pk])
    thumb = thumbnail_of(image)
    assert thumb.size == (32, 64)  # portrait: width and height swapped
    top, bottom = thumb.getpixel((16, 5)), thumb.getpixel((16, 58))
    assert top[0] > 200 and top[2] < 60  # rotated CW: the left (red) half is on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.django_db
def test_transparent_png_thumbnail_has_a_white_background():
    picture = PILImage.new("RGBA", (20, 20), (0, 0, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    image = image_with(buffer.getvalue())
    make_thumbnails([image.pk])
    assert thumbnail_of(image).getpixel((10, 10)) == pytest.approx((255, 255, 255), abs=3)


@pytest.mark.django_db
def test_thumbnail_task_is_idempotent():
    image = image_with(make_image(300, 200))
    assert make_thumbnails([image.pk])["made"] == [image.pk]
    first = thumbnail_of(image)
    name = image.thumbnail.name
    assert make_thumbnails([image.pk])["made"] == []
    image.refresh_from_db()
    assert image.thumbnail.name == name  # no "_abc123" copies from a second run
    assert thumbnail_of(image).tobytes() == first.tobytes()


@pytest.mark.django_db
def test_thumbnail_left_by_a_dead_run_is_replaced_under_the_same_name():
    image = image_with(make_image(300, 200))
    stale = f"thumbnails/{image.project_id}/{image.pk}.jpg"
    default_storage.save(stale, ContentFile(b"half a file"))
    make_thumbnails([image.pk])
    image.refresh_from_db()
    assert image.thumbnail.name == stale
    assert thumbnail_of(image).size == (256, 171)


@pytest.mark.django_db
def test_a_broken_file_is_skipped_and_the_rest_of_the_batch_is_made():
    good = [image_with(make_image(300, 200, color=(i, 9, 9))) for i in range(2)]
    broken = image_with(make_image(300, 200, color=(1, 2, 3)))
    default_storage.delete(broken.file.name)
    default_storage.save(broken.file.name, ContentFile(b"garbage, not an image"))
    missing = image_with(make_image(300, 200, color=(4, 5, 6)))
    default_storage.delete(missing.file.name)
    result = make_thumbnails([good[0].pk, broken.pk, missing.pk, good[1].pk, 999_999])
    assert sorted(result["made"]) == sorted(i.pk for i in good)
    assert sorted(result["failed"]) == sorted([broken.pk, missing.pk])
    for image in good:
        assert thumbnail_of(image).size == (256, 171)
    broken.refresh_from_db()
    assert broken.thumbnail.name == ""


def test_uploaded_images_get_thumbnails_from_a_real_worker(celery_worker_redis, client, settings):
    from tests.factories import MembershipFactory

    settings.LOUPE_THUMBNAIL_PX = 48
    member = MembershipFactory()
    client.force_login(member.user)
    files = [
        SimpleUploadedFile(f"{i}.jpg", make_image(320, 240, color=(i * 20, 50, 90), fmt="JPEG"))
        for i in range(5)
    ]
    response = client.post(f"/api/projects/{member.project_id}/images/upload/", {"files": files})
    assert response.status_code == 201
    ids = [item["image_id"] for item in response.json()["accepted"]]
    assert len(ids) == 5
    images = Image.objects.filter(pk__in=ids)
    wait_for(
        lambda: not images.filter(thumbnail="").exists(),
        timeout_s=30,
        what="the worker to make 5 thumbnails",
    )
    for image in images:
        assert thumbnail_of(image).size == (48, 36)


@pytest.fixture
def broker_down(transactional_db):
    """Point the Celery app at a port where nothing listens, as when Redis is down."""
    from project.celery import app
    from tests.worker import _reset_connections

    saved = {key: app.conf[key] for key in ("broker_url", "result_backend")}
    app.conf.update(broker_url="redis://127.0.0.1:1/0", result_backend="redis://127.0.0.1:1/0")
    _reset_connections(app)
    yield
    app.conf.update(saved)
    _reset_connections(app)


def test_upload_still_lands_when_the_broker_is_down(broker_down, client):
    import time

    from tests.factories import MembershipFactory

    member = MembershipFactory()
    client.force_login(member.user)
    started = time.monotonic()
    response = client.post(
        f"/api/projects/{member.project_id}/images/upload/",
        {"files": [SimpleUploadedFile("a.png", make_image(300, 300))]},
    )
    elapsed_s = time.monotonic() - started
    assert response.status_code == 201
    image = Image.objects.get(pk=response.json()["accepted"][0]["image_id"])
    assert image.thumbnail.name == ""  # placeholder until the sweep queues it again
    assert elapsed_s < 10, f"the upload waited {elapsed_s:.1f} s on the dead broker"


def test_sweep_queues_recent_images_without_thumbnails_for_the_worker(celery_worker_redis):
    from datetime import timedelta

    from django.utils import timezone

    from labeling.tasks import queue_missing_thumbnails

    recent, fresh, old = (image_with(make_image(300, 200, color=(i, 3, 3))) for i in range(3))
    now = timezone.now()
    Image.objects.filter(pk=recent.pk).update(created=now - timedelta(minutes=30))
    Image.objects.filter(pk=old.pk).update(created=now - timedelta(days=3))
    assert queue_missing_thumbnails() == 1
    wait_for(
        lambda: Image.objects.filter(pk=recent.pk).exclude(thumbnail="").exists(),
        timeout_s=30,
        what="the worker to make the swept thumbnail",
    )
    assert Image.objects.filter(pk__in=[fresh.pk, old.pk], thumbnail="").count() == 2
