"""Microsoft's own SDK (azure-cognitiveservices-vision-customvision 3.1.1, which calls
/customvision/v3.4-preview/training) drives a live Loupe server the way Microsoft's Python
quickstarts do, with a real Celery worker on Redis training the iterations."""

from __future__ import annotations

import io
import time
import zipfile

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.prediction.models import (
    CustomVisionErrorException as PredictionError,
)
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    PredictionQueryToken,
    Region,
)
from django.urls import reverse
from msrest.authentication import ApiKeyCredentials

from customvision.ids import Kind, from_uuid
from labeling.models import Image, Project, Role
from labeling.services.api_keys import create_api_key
from predictions.models import Prediction
from tests.conftest import make_image
from tests.factories import UserFactory
from tests.training.detection_data import boxed_picture
from training.models import Iteration

RED, GREEN = (220, 30, 30), (30, 200, 40)


@pytest.fixture
def keys(db):
    user = UserFactory(username="quickstart", is_staff=True)
    training = create_api_key(user=user, kind="training", name="t").secret
    prediction = create_api_key(user=user, kind="prediction", name="p").secret
    return user, training, prediction


def trainer_for(url: str, key: str) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(url, ApiKeyCredentials(in_headers={"Training-key": key}))


def predictor_for(url: str, key: str) -> CustomVisionPredictionClient:
    return CustomVisionPredictionClient(url, ApiKeyCredentials(in_headers={"Prediction-key": key}))


def colour_png(colour: tuple[int, int, int], seed: int) -> bytes:
    jitter = tuple(min(255, max(0, c + (seed * 7) % 31 - 15)) for c in colour)
    return make_image(32, 32, jitter)


def wait_until_trained(trainer, project_id: str, iteration, timeout_s: float = 400.0):
    """The quickstart's loop: poll get_iteration until Completed (failing on Failed)."""
    deadline = time.monotonic() + timeout_s
    while iteration.status != "Completed":
        assert iteration.status == "Training", iteration.training_error_details
        assert time.monotonic() < deadline, "training did not finish in time"
        time.sleep(1)
        iteration = trainer.get_iteration(project_id, iteration.id)
    return iteration


@pytest.fixture
def _quiet_channels(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.LOUPE_FEATURE_CACHE_DIR = settings.MEDIA_ROOT / "features"


def test_classification_quickstart(
    live_server, celery_worker_redis, keys, client, _quiet_channels
) -> None:
    user, training_key, prediction_key = keys
    trainer = trainer_for(live_server.url, training_key)

    project = trainer.create_project("Colours", description="red or green")
    red = trainer.create_tag(project.id, "red")
    green = trainer.create_tag(project.id, "green")
    entries = [
        ImageFileCreateEntry(
            name=f"{name}_{i}.png", contents=colour_png(colour, i), tag_ids=[tag.id]
        )
        for name, colour, tag in (("red", RED, red), ("green", GREEN, green))
        for i in range(8)
    ]
    for start in range(0, len(entries), 64):
        upload = trainer.create_images_from_files(
            project.id, ImageFileCreateBatch(images=entries[start : start + 64])
        )
        assert upload.is_batch_successful, [i.status for i in upload.images]
    assert trainer.get_tagged_image_count(project.id) == 16
    assert {t.name: t.image_count for t in trainer.get_tags(project.id)} == {"red": 8, "green": 8}

    iteration = trainer.train_project(project.id)
    assert iteration.status == "Training" and iteration.training_type == "Regular"
    iteration = wait_until_trained(trainer, project.id, iteration)
    assert iteration.trained_at is not None and iteration.classification_type == "Multiclass"

    performance = trainer.get_iteration_performance(project.id, iteration.id, threshold=0.5)
    assert performance.precision >= 0.9 and performance.recall >= 0.9
    assert {t.name for t in performance.per_tag_performance} == {"red", "green"}
    assert {t.id for t in performance.per_tag_performance} == {red.id, green.id}
    held_out = trainer.get_image_performances(project.id, iteration.id)
    assert len(held_out) == trainer.get_image_performance_count(project.id, iteration.id) == 16
    assert all(len(image.predictions) == 2 for image in held_out)

    # Model export: queued, built by the worker, downloaded from its signed address.
    assert trainer.get_exports(project.id, iteration.id) == []
    assert trainer.export_iteration(project.id, iteration.id, "ONNX").status == "Exporting"
    deadline = time.monotonic() + 300
    while (export := trainer.get_exports(project.id, iteration.id)[0]).status == "Exporting":
        assert time.monotonic() < deadline, "the export did not finish in time"
        time.sleep(1)
    assert export.status == "Done" and export.platform == "ONNX", export
    download = httpx.get(export.download_uri, timeout=30)
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert any(name.endswith(".onnx") for name in archive.namelist())

    trainer.update_iteration(project.id, iteration.id, name="First")
    assert trainer.publish_iteration(project.id, iteration.id, "classifyModel", "/sub/x") is True
    assert trainer.get_iteration(project.id, iteration.id).publish_name == "classifyModel"

    predictor = predictor_for(live_server.url, prediction_key)
    result = predictor.classify_image(project.id, "classifyModel", colour_png(RED, 99))
    assert result.predictions[0].tag_name == "red"
    assert result.predictions[0].probability > result.predictions[1].probability

    # The stored prediction is in the Predictions tab, as one sent from the browser would be.
    pk = from_uuid(project.id, Kind.PROJECT)
    client.force_login(user)
    stored_image = Prediction.objects.get(pk=from_uuid(result.id, Kind.PREDICTION)).image
    tab = client.get(reverse("predictions:prediction-list", args=[pk]))
    assert tab.status_code == 200
    assert f'data-image-id="{stored_image.pk}"'.encode() in tab.content

    stored = trainer.query_predictions(project.id, PredictionQueryToken(order_by="Newest"))
    assert [r.id for r in stored.results] == [result.id]
    assert stored.results[0].predictions[0].tag_name == "red"
    quick = trainer.quick_test_image(project.id, colour_png(GREEN, 98), iteration_id=iteration.id)
    assert quick.predictions[0].tag_name == "green" and quick.id is not None
    trainer.delete_prediction(project.id, [result.id, quick.id])
    assert trainer.query_predictions(project.id, PredictionQueryToken()).results == []
    assert not Prediction.objects.filter(status="open").exists()

    # Everything is the browser's data: the project opens, its images are taggable there, and
    # its iteration has a performance page.
    page = client.get(reverse("labeling:project-detail", args=[pk]))
    assert page.status_code == 200 and b"Colours" in page.content
    image = Image.objects.filter(project_id=pk, is_training=True).first()
    assert client.get(reverse("labeling:image-tag", args=[pk, image.pk])).status_code == 200
    performance_page = client.get(
        reverse(
            "training:iteration-performance", args=[pk, from_uuid(iteration.id, Kind.ITERATION)]
        )
    )
    assert performance_page.status_code == 200
    assert Project.objects.get(pk=pk).memberships.get(user=user).role == Role.ADMIN

    trainer.unpublish_iteration(project.id, iteration.id)
    with pytest.raises(PredictionError) as unpublished:
        predictor.classify_image(project.id, "classifyModel", colour_png(RED, 97))
    assert unpublished.value.response.status_code == 404
    trainer.delete_iteration(project.id, iteration.id)
    assert not Iteration.objects.filter(pk=from_uuid(iteration.id, Kind.ITERATION)).exists()
    trainer.delete_project(project.id)
    with pytest.raises(CustomVisionErrorException) as gone:
        trainer.get_project(project.id)
    assert gone.value.response.status_code == 404


def test_object_detection_quickstart(
    live_server, celery_worker_redis, keys, settings, _quiet_channels
) -> None:
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 240
    settings.LOUPE_DETECTION_MAX_EPOCHS = 4
    settings.LOUPE_DETECTION_IMAGE_SIZE_PX = 64
    _, training_key, prediction_key = keys
    trainer = trainer_for(live_server.url, training_key)
    domain = next(
        d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == "General"
    )
    project = trainer.create_project("Squares", domain_id=domain.id)
    square = trainer.create_tag(project.id, "square")
    entries = []
    for i in range(8):
        data, boxes = boxed_picture([(0, 8 + 3 * i, 10 + 2 * i, 24)], seed=i)
        _, left, top, width, height = boxes[0]
        region = Region(tag_id=square.id, left=left, top=top, width=width, height=height)
        entries.append(ImageFileCreateEntry(name=f"s{i}.png", contents=data, regions=[region]))
    upload = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
    assert upload.is_batch_successful
    assert all(len(i.image.regions) == 1 for i in upload.images)
    assert Image.objects.filter(regions__isnull=False).distinct().count() == 8

    iteration = wait_until_trained(trainer, project.id, trainer.train_project(project.id))
    assert iteration.classification_type is None
    performance = trainer.get_iteration_performance(
        project.id, iteration.id, threshold=0.1, overlap_threshold=0.3
    )
    assert [t.name for t in performance.per_tag_performance] == ["square"]
    trainer.publish_iteration(project.id, iteration.id, "detectModel", "/sub/x")

    predictor = predictor_for(live_server.url, prediction_key)
    data, _ = boxed_picture([(0, 20, 20, 24)], seed=50)
    result = predictor.detect_image(project.id, "detectModel", io.BytesIO(data))
    assert result.predictions and result.predictions[0].tag_name == "square"
    for prediction in result.predictions:
        box = prediction.bounding_box
        assert 0 <= box.left <= 1 and 0 <= box.top <= 1 and 0 < box.width <= 1
    probabilities = [p.probability for p in result.predictions]
    assert probabilities == sorted(probabilities, reverse=True)


# --- Errors as the SDK raises them (no training needed) ---------------------------------------


def test_sdk_errors(live_server, keys) -> None:
    _, training_key, _ = keys
    with pytest.raises(CustomVisionErrorException) as wrong:
        trainer_for(live_server.url, "lpt_not-a-key").get_projects()
    assert wrong.value.response.status_code == 401

    trainer = trainer_for(live_server.url, training_key)
    with pytest.raises(CustomVisionErrorException) as unknown:
        trainer.get_project("6c6f7570-0001-8000-8000-0000000f4240")
    assert unknown.value.response.status_code == 404
    assert unknown.value.error.code == "NotFoundProject"

    project = trainer.create_project("Errors")
    tag = trainer.create_tag(project.id, "apple")
    with pytest.raises(CustomVisionErrorException) as duplicate:
        trainer.create_tag(project.id, "Apple")
    assert duplicate.value.error.code == "BadRequestTagNameNotUnique"
    assert "already a tag" in duplicate.value.message

    good = [
        ImageFileCreateEntry(name=f"ok{i}.png", contents=colour_png(RED, i), tag_ids=[tag.id])
        for i in range(3)
    ]
    corrupt = ImageFileCreateEntry(name="bad.png", contents=b"\x89PNG not really", tag_ids=[tag.id])
    result = trainer.create_images_from_files(
        project.id, ImageFileCreateBatch(images=[good[0], corrupt, *good[1:]])
    )
    assert result.is_batch_successful is False
    assert [i.status for i in result.images] == ["OK", "ErrorImageFormat", "OK", "OK"]
    assert trainer.get_tagged_image_count(project.id) == 3

    # Bytes (no filename in the multipart part) and an open file (with one) both land.
    trainer.create_images_from_data(project.id, colour_png(GREEN, 1), tag_ids=[tag.id])
    trainer.create_images_from_data(project.id, io.BytesIO(colour_png(GREEN, 2)))
    assert trainer.get_untagged_image_count(project.id) == 1
    assert trainer.get_tagged_image_count(project.id) == 4


# --- Raw REST, as Microsoft's curl quickstart writes it -----------------------------------------


def test_raw_rest_spellings_with_httpx(live_server, keys) -> None:
    _, training_key, _ = keys
    base = f"{live_server.url}/customvision/v3.3/Training"
    headers = {"Training-key": training_key}
    with httpx.Client(headers=headers, timeout=30) as http:
        project = http.post(f"{base}/projects", params={"name": "Curl"})
        assert project.status_code == 200 and project.headers["content-type"] == "application/json"
        project_id = project.json()["id"]
        tag = http.post(f"{base}/projects/{project_id}/tags", params={"name": "red"}).json()
        upload = http.post(
            f"{base}/projects/{project_id}/images",
            params={"tagIds": tag["id"]},
            content=colour_png(RED, 1),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert upload.status_code == 200 and upload.json()["isBatchSuccessful"] is True
        assert http.get(f"{base}/projects/{project_id}/images/tagged/count").json() == 1
        # The SDK 3.1 base and the other versions reach the same project.
        for version in ("v3.4-preview/training", "v3.0/training", "V3.2/TRAINING"):
            url = f"{live_server.url}/customvision/{version}/projects/{project_id}"
            assert http.get(url).json()["name"] == "Curl"
        deleted = http.delete(f"{base}/projects/{project_id}")
        assert deleted.status_code == 204 and deleted.content == b""
        wrong = httpx.get(f"{base}/projects", headers={"Training-key": "nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "Unauthorized"
