"""Every flow that touches media, on S3-compatible storage served over HTTP (moto's server).

The web side is Django's test client, the worker a real Celery worker on Redis; MEDIA_ROOT is a
plain file (tests/storage/conftest.py), so these pass only if neither side reads or writes media
anywhere but the bucket: upload, thumbnails, tagging, the members-only /media/ view, quick
training (images read, model written), publishing and the prediction API (model read, the
stored prediction's image written), dataset import (archive, status, images) and export.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from labeling.models import Image
from tests.conftest import make_image
from tests.factories import TagFactory
from tests.storage.conftest import ACCESS_KEY, REGION, SECRET_KEY, Bucket
from tests.streaming import body_of
from tests.training.conftest import COLOURS, add_images
from tests.worker import wait_for

TINY_BACKBONE = "lite0-64"


def _png(name: str, colour: tuple[int, int, int], size: int = 40) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, make_image(size, size, colour), content_type="image/png")


def test_the_default_storage_is_the_bucket(s3_media: Bucket, settings):
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    from project.storage_s3 import MediaS3Storage

    assert isinstance(storages["default"], MediaS3Storage)
    name = default_storage.save("images/a.txt", ContentFile(b"one"))
    # As on local disk, a name in use gets another: nothing is silently overwritten.
    other = default_storage.save("images/a.txt", ContentFile(b"two"))
    assert name == "images/a.txt" and other != name
    assert s3_media.read(name) == b"one" and s3_media.read(other) == b"two"
    assert os.path.isfile(settings.MEDIA_ROOT)


@pytest.mark.slow
def test_upload_thumbnails_tags_and_media_view(
    celery_worker_redis, s3_media: Bucket, project, users, client_for, settings
):
    tag = project.tags.create(name="red")
    client = client_for(users["annotator"])
    files = [_png("one.png", (200, 0, 0), 300), _png("two.png", (0, 200, 0), 64)]
    response = client.post(
        reverse("api-image-upload", args=[project.pk]), {"files": files}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert len(response.json()["accepted"]) == 2
    images = list(Image.objects.filter(project=project).order_by("pk"))
    assert len(images) == 2
    for image, upload in zip(images, files, strict=True):
        upload.seek(0)
        assert s3_media.read(image.file.name) == upload.read()
        # URLs stay Loupe's members-only view, never the bucket's.
        assert image.file.url == f"/media/{image.file.name}"

    # The worker makes the thumbnails from the bucket, into the bucket.
    wait_for(
        lambda: all(image.thumbnail for image in Image.objects.filter(project=project)),
        timeout_s=60,
        what="the thumbnails",
    )
    for image in Image.objects.filter(project=project):
        assert image.thumbnail.name in s3_media.keys("thumbnails/")

    image = images[0]
    image.refresh_from_db()
    tagged = client.put(
        reverse("api-image-tags", args=[project.pk, image.pk]),
        {"tag_ids": [tag.pk], "version": image.version},
        content_type="application/json",
    )
    assert tagged.status_code == 200, tagged.content
    assert list(image.image_tags.values_list("tag__name", flat=True)) == ["red"]

    # /media/: streamed from the bucket to members only.
    for name, content_type in (
        (image.file.name, "image/png"),
        (image.thumbnail.name, "image/jpeg"),
    ):
        answer = client.get(f"/media/{name}")
        assert answer.status_code == 200
        assert answer["Content-Type"] == content_type
        assert answer["Cache-Control"] == "private, max-age=3600"
        assert body_of(answer) == s3_media.read(name)
        assert int(answer["Content-Length"]) == len(s3_media.read(name))
    assert client_for(users["non_member"]).get(image.file.url).status_code == 404
    assert client_for(None).get(image.file.url).status_code == 302
    assert client_for(users["annotator"]).get("/media/images/not-there.png").status_code == 404
    # A known image whose object is gone: 404 with a reason, not a 500.
    s3_media.client.delete_object(Bucket=s3_media.name, Key=images[1].file.name)
    assert client_for(users["annotator"]).get(images[1].file.url).status_code == 404

    # Deleting an image deletes its objects.
    admin = client_for(users["admin"])
    deleted = admin.delete(reverse("api-image-detail", args=[project.pk, image.pk]))
    assert deleted.status_code == 204
    assert not {image.file.name, image.thumbnail.name} & s3_media.keys()
    assert os.path.isfile(settings.MEDIA_ROOT)


@pytest.fixture
def tiny_backbone(monkeypatch):
    """Quick training at 64 px for the test's speed: Lite0's weights, the same code paths."""
    from training.ml import backbones

    compact = backbones.get_backbone(backbones.BACKBONE_FOR_DOMAIN["general_compact"])
    backbones.register_backbone(dataclasses.replace(compact, name=TINY_BACKBONE, input_size=64))
    monkeypatch.setitem(backbones.BACKBONE_FOR_DOMAIN, "general_compact", TINY_BACKBONE)
    monkeypatch.setitem(backbones.BACKBONE_FOR_DOMAIN, "general", TINY_BACKBONE)


@pytest.mark.slow
def test_quick_training_publishing_and_prediction(
    celery_worker_redis,
    s3_media: Bucket,
    project,
    users,
    client_for,
    settings,
    tiny_backbone,
    tmp_path,
):
    from predictions.model_cache import model_cache
    from predictions.models import Prediction
    from predictions.services.keys import create_key
    from training.models import Iteration
    from training.services.publishing import publish_iteration

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The worker's own scratch (its feature cache), not shared with anyone.
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "worker-scratch"
    model_cache().clear()
    for i, name in enumerate(("red", "green", "blue")):
        tag = TagFactory(project=project, name=name)
        add_images(project, [tag], 6, colour=COLOURS[i], seed=i)
    assert len(s3_media.keys("images/")) == 18

    admin = client_for(users["admin"])
    started = admin.post(reverse("training:train", args=[project.pk]), {"training_type": "quick"})
    assert started.status_code == 302
    iteration = Iteration.objects.get(project=project)
    wait_for(
        lambda: Iteration.objects.filter(
            pk=iteration.pk, status__in=["completed", "failed"]
        ).exists(),
        timeout_s=180,
        what="the iteration to finish",
    )
    iteration.refresh_from_db()
    assert iteration.status == "completed", iteration.failure_message
    assert iteration.backbone == TINY_BACKBONE
    assert iteration.artifact.name in s3_media.keys("iterations/")
    assert not s3_media.keys(f"{iteration.artifact.name}.tmp")
    page = admin.get(reverse("training:iteration-performance", args=[project.pk, iteration.pk]))
    assert page.status_code == 200

    publish_iteration(iteration=iteration, name="prod", by=users["admin"])
    key = create_key(project=project, name="s3", by=users["admin"]).secret
    model_cache().clear()  # the model is read back from the bucket
    url = f"/api/predict/{project.pk}/classify/iterations/prod/image"
    answer = Client().post(
        url,
        make_image(40, 40, (0, 200, 20)),
        content_type="application/octet-stream",
        HTTP_PREDICTION_KEY=key,
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["predictions"][0]["tagName"] == "green"
    stored = Prediction.objects.get(pk=answer.json()["id"])
    assert stored.image.file.name in s3_media.keys("images/")
    reviewer = client_for(users["reviewer"])
    assert body_of(reviewer.get(stored.image.file.url)) == s3_media.read(stored.image.file.name)
    assert client_for(users["annotator"]).get(stored.image.file.url).status_code == 404
    assert os.path.isfile(settings.MEDIA_ROOT)


@pytest.mark.slow
def test_dataset_import_and_export(
    celery_worker_redis, s3_media: Bucket, project, users, client_for
):
    from labeling.services.import_jobs import get_import

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(3):
            archive.writestr(f"cat/cat{i}.png", make_image(300, 300, (100 + 10 * i, 0, 0)))
            archive.writestr(f"dog/dog{i}.png", make_image(300, 300, (0, 100 + 10 * i, 0)))
    upload = SimpleUploadedFile("set.zip", buffer.getvalue(), content_type="application/zip")
    admin = client_for(users["admin"])
    response = admin.post(
        reverse("labeling:datasets", args=[project.pk]), {"format": "folders", "archive": upload}
    )
    assert response.status_code == 302
    job_id = response["Location"].rsplit("job=", 1)[1]
    assert f"imports/{project.pk}/{job_id}/archive.zip" in s3_media.keys("imports/")

    job = wait_for(
        lambda: (job := get_import(project=project, job_id=job_id)).is_finished and job,
        timeout_s=60,
        what="the import",
    )
    assert job.state == "done", (job.message, job.problems)
    assert project.images.count() == 6
    assert {i.file.name for i in project.images.all()} <= s3_media.keys("images/")
    # The archive is gone from the bucket; the status stays for the page.
    assert s3_media.keys(f"imports/{project.pk}/{job_id}/") == {
        f"imports/{project.pk}/{job_id}/status.json"
    }
    status = admin.get(reverse("labeling:dataset-import-status", args=[project.pk, job_id]))
    assert status.status_code == 200

    from labeling.services.export_jobs import get_export

    started = admin.post(
        reverse("labeling:dataset-export", args=[project.pk]), {"format": "folders"}
    )
    assert started.status_code == 302
    export_id = started["Location"].rsplit("export=", 1)[1]
    exported = wait_for(
        lambda: (job := get_export(project=project, job_id=export_id)).is_finished and job,
        timeout_s=60,
        what="the export",
    )
    assert exported.state == "done", exported.message
    assert s3_media.keys(f"exports/{project.pk}/{export_id}/")
    download = admin.get(reverse("labeling:dataset-export-download", args=[project.pk, export_id]))
    assert download.status_code == 200
    content = body_of(download)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        pngs = sorted(n for n in archive.namelist() if n.endswith(".png"))
        assert len(pngs) == 6
        by_content = {archive.read(n) for n in pngs}
    assert by_content == {s3_media.read(i.file.name) for i in project.images.all()}


def test_settings_from_the_environment_reach_the_bucket(s3_media: Bucket, tmp_path):
    """LOUPE_S3_* and the AWS_* credentials alone configure a fresh process (a worker host)."""
    env = {
        **os.environ,
        "LOUPE_S3_BUCKET": s3_media.name,
        "LOUPE_S3_ENDPOINT_URL": s3_media.endpoint_url,
        "LOUPE_S3_REGION": REGION,
        "LOUPE_S3_ADDRESSING_STYLE": "path",
        "LOUPE_S3_PREFIX": "site-a",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "LOUPE_DATA_DIR": str(tmp_path / "other-host"),
        "MEDIA_ROOT": str(tmp_path / "other-host-media"),
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    script = (
        "import django; django.setup()\n"
        "from django.core.files.base import ContentFile\n"
        "from django.core.files.storage import default_storage as s\n"
        "name = s.save('images/probe.txt', ContentFile(b'from another host'))\n"
        "print(type(s._wrapped).__name__, name, s.url(name))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["MediaS3Storage", "images/probe.txt", "/media/images/probe.txt"]
    assert s3_media.read("site-a/images/probe.txt") == b"from another host"
    assert not (tmp_path / "other-host-media").exists()


@pytest.mark.parametrize("where", ["local disk", "S3"])
def test_a_rewritten_status_file_is_never_missing_to_a_reader(where, request):
    """replace_file (a job's status.json): a reader polling meanwhile always finds the file."""
    import threading

    from project.storage import replace_file

    if where == "S3":
        request.getfixturevalue("s3_media")
    replace_file("imports/1/job/status.json", b'{"n": 0}')
    stop, missing, seen = threading.Event(), [], set()

    def read() -> None:
        while not stop.is_set():
            try:
                with default_storage.open("imports/1/job/status.json", "rb") as handle:
                    seen.add(handle.read())
            except FileNotFoundError:
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(1, 30):
            replace_file("imports/1/job/status.json", f'{{"n": {n}}}'.encode())
    finally:
        stop.set()
        reader.join()
    assert not missing
    assert len(seen) > 1  # the reader really overlapped the writes
    with default_storage.open("imports/1/job/status.json", "rb") as handle:
        assert handle.read() == b'{"n": 29}'
