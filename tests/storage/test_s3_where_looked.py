"""Where the model looked with media on S3 (tests/storage/conftest.py: MEDIA_ROOT is a plain
file, so any local-path access fails): the model, the images, the quick-test upload, the status
files and the overlay PNGs all go through the bucket."""

from __future__ import annotations

import io
import os

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image as PILImage

from tests.factories import ImageFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration, colour_png  # noqa: F401
from tests.storage.conftest import Bucket
from tests.streaming import body_of
from training.models import IterationImage
from training.services.saliency import folder
from training.tasks_saliency import explain_prediction, measure_context_reliance

pytestmark = pytest.mark.django_db

RED = (220, 30, 30)


def test_heat_maps_and_context_reliance_live_in_the_bucket(
    s3_media: Bucket,
    project,
    users,
    client_for,
    settings,
    colour_artifact,  # noqa: F811
):
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, colour_artifact)
    assert iteration.artifact.name in s3_media.keys("iterations/")
    image = ImageFactory(
        project=project, width=48, height=32, file=ContentFile(colour_png(RED, 48), "r.png")
    )
    IterationImage.objects.create(
        iteration=iteration, image=image, sha256=image.sha256, file_name=image.file.name, labels=[0]
    )
    client = client_for(users["annotator"])
    base = reverse("training:where-looked", args=[project.pk])

    # A project image.
    query = f"?iteration={iteration.pk}&image={image.pk}"
    client.post(base + query, headers={"HX-Request": "true"})
    assert explain_prediction(iteration.pk, f"i{image.pk}") == "done"
    prefix = folder(iteration) + "/"
    assert {f"{prefix}i{image.pk}.json", f"{prefix}i{image.pk}.png"} <= s3_media.keys(prefix)
    overlay = client.get(reverse("training:where-looked-overlay", args=[project.pk]) + query)
    assert overlay.status_code == 200
    body = body_of(overlay)
    assert body == s3_media.read(f"{prefix}i{image.pk}.png")
    assert PILImage.open(io.BytesIO(body)).mode == "RGBA"

    # A quick-test upload: its bytes are kept in the bucket for the worker.
    upload = io.BytesIO(colour_png(RED, 40))
    upload.name = "red.png"
    tested = client.post(
        reverse("predictions:quick-test", args=[project.pk]),
        {"iteration": iteration.pk, "image": upload},
    )
    digest = tested.context["where_looked_upload"]
    assert f"{prefix}uploads/{digest}" in s3_media.keys(prefix)
    client.post(base + f"?iteration={iteration.pk}&upload={digest}", headers={"HX-Request": "true"})
    assert explain_prediction(iteration.pk, f"u{digest}") == "done"
    assert f"{prefix}u{digest}.png" in s3_media.keys(prefix)

    # Context reliance.
    client.post(reverse("training:context-reliance", args=[project.pk, iteration.pk]))
    assert measure_context_reliance(iteration.pk) == "done"
    assert f"{prefix}context.json" in s3_media.keys(prefix)
    assert os.path.isfile(settings.MEDIA_ROOT)  # still the plain file: nothing went local
