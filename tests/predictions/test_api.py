"""The prediction API: answers, every error status, keys, and stored or not as asked."""

from __future__ import annotations

import io

import pytest
from django.test import Client

from labeling.models import Image
from predictions.model_cache import model_cache
from predictions.models import Prediction, PredictionScore
from predictions.services.keys import revoke_key, rotate_key
from tests.predictions.conftest import BLUE, GREEN, RED, TINY_BACKBONE, colour_png
from training.ml.backbones import get_backbone

pytestmark = pytest.mark.django_db(transaction=False)


def post(url: str, data: bytes, key: str | None, *, multipart: bool = False, **extra):
    client = Client()
    headers = {} if key is None else {"HTTP_PREDICTION_KEY": key}
    if multipart:
        upload = io.BytesIO(data)
        upload.name = "x.png"
        return client.post(url, {"imageData": upload}, **headers, **extra)
    return client.post(url, data, content_type="application/octet-stream", **headers, **extra)


def test_classify_returns_every_tag_sorted_and_stores_the_prediction(trained):
    response = post(trained.url(), colour_png(GREEN), trained.key)
    assert response.status_code == 200, response.content
    body = response.json()
    predictions = body["predictions"]
    assert predictions[0]["tagName"] == "green"
    assert {row["tagName"] for row in predictions} == {"red", "green", "blue"}
    probabilities = [row["probability"] for row in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert probabilities[0] > 0.5
    assert body["iteration"] == trained.iteration.pk and body["project"] == trained.project.pk
    assert body["created"].endswith("Z")

    stored = Prediction.objects.get(pk=body["id"])
    assert stored.image.source == Image.Source.PREDICTION and not stored.image.is_training
    assert stored.iteration_id == trained.iteration.pk
    assert stored.results == predictions
    assert stored.top_tag.name == "green"
    assert 0.0 <= stored.uncertainty <= 1.0
    assert stored.embedding_vector().shape == (get_backbone(TINY_BACKBONE).feature_dim,)
    assert PredictionScore.objects.filter(prediction=stored).count() == 3
    # The image is kept, but it is not training data.
    assert trained.project.images.training().filter(pk=stored.image_id).count() == 0


def test_multipart_without_filename_and_nostore_keep_nothing(trained):
    before = (Image.objects.count(), Prediction.objects.count())
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="imageData"\r\n\r\n'.encode()
        + colour_png(BLUE)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = Client().post(
        trained.url(nostore=True),
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        HTTP_PREDICTION_KEY=trained.key,
    )
    assert response.status_code == 200, response.content
    assert response.json()["predictions"][0]["tagName"] == "blue"
    assert response.json()["id"] is None
    assert (Image.objects.count(), Prediction.objects.count()) == before


def test_multipart_with_a_filename_works_too(trained):
    response = post(trained.url(), colour_png(RED), trained.key, multipart=True)
    assert response.status_code == 200
    assert response.json()["predictions"][0]["tagName"] == "red"


def test_wrong_missing_revoked_and_rotated_keys_are_401(trained):
    assert post(trained.url(), colour_png(RED), None).status_code == 401
    wrong = post(trained.url(), colour_png(RED), "lpk_not-a-key")
    assert wrong.status_code == 401 and wrong.json()["code"] == "Unauthorized"
    key_row = trained.project.prediction_keys.get()
    rotated = rotate_key(project=trained.project, key_id=key_row.pk, by=trained.admin)
    assert post(trained.url(), colour_png(RED), trained.key).status_code == 401
    assert post(trained.url(nostore=True), colour_png(RED), rotated.secret).status_code == 200
    revoke_key(project=trained.project, key_id=key_row.pk, by=trained.admin)
    assert post(trained.url(nostore=True), colour_png(RED), rotated.secret).status_code == 401
    assert Prediction.objects.count() == 0


def test_a_key_of_another_project_is_401(trained, django_user_model):
    from predictions.services.keys import create_key
    from tests.factories import MembershipFactory, ProjectFactory

    other = ProjectFactory()
    owner = MembershipFactory(project=other, role="admin").user
    foreign = create_key(project=other, name="theirs", by=owner).secret
    assert post(trained.url(), colour_png(RED), foreign).status_code == 401


def test_unknown_publish_name_is_404_and_unknown_project_401(trained):
    # A key is a key of one project: on a project that does not exist it is a wrong key (401),
    # so the API does not tell who holds no key which project ids exist.
    missing_project = post(trained.url(project_id=999999), colour_png(RED), trained.key)
    assert missing_project.status_code == 401
    unknown_name = post(trained.url(name="nope"), colour_png(RED), trained.key)
    assert unknown_name.status_code == 404
    assert "nope" in unknown_name.json()["message"]


def test_detect_on_a_classification_project_is_400(trained):
    response = post(trained.url(kind="detect"), colour_png(RED), trained.key)
    assert response.status_code == 400 and "classify" in response.json()["message"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not an image at all", "not_an_image"),
        (colour_png(RED)[:60], "corrupt"),
        (b"", "empty"),
    ],
)
def test_bad_images_are_400_with_the_reason(trained, data, reason):
    response = post(trained.url(), data, trained.key)
    assert response.status_code == 400
    body = response.json()
    assert body["reason"] == reason and body["message"].endswith(".")
    assert Prediction.objects.count() == 0


def test_images_over_the_limit_are_413(trained, settings):
    settings.LOUPE_MAX_PREDICTION_BYTES = 1000
    big = colour_png(RED, size=400) + b"\0" * 2000
    response = post(trained.url(), big, trained.key)
    assert response.status_code == 413
    assert "at most" in response.json()["message"]
    # Declared far over the limit: refused before the body is read.
    huge = b"\0" * (settings.LOUPE_MAX_PREDICTION_BYTES + 70 * 1024)
    assert post(trained.url(), huge, trained.key).status_code == 413


def test_model_is_loaded_once_and_a_new_publication_switches_over(trained, colour_artifact):
    from tests.predictions.conftest import colour_iteration
    from training.services.publishing import publish_iteration, unpublish_iteration

    cache = model_cache()
    loads = cache.loads
    for colour in (RED, GREEN, BLUE):
        assert post(trained.url(nostore=True), colour_png(colour), trained.key).status_code == 200
    assert cache.loads == loads + 1

    second = colour_iteration(trained.project, trained.tags, colour_artifact, number=2)
    unpublish_iteration(iteration=trained.iteration, by=trained.admin)
    publish_iteration(iteration=second, name="prod", by=trained.admin)
    response = post(trained.url(), colour_png(RED), trained.key)
    assert response.status_code == 200 and response.json()["iteration"] == second.pk
    assert cache.loads == loads + 2
    assert Prediction.objects.get().iteration_id == second.pk
