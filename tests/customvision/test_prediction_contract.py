"""The Prediction API's JSON against the SDK's msrest models (ImagePrediction, Prediction,
BoundingBox, CustomVisionError): names, types and presence, per endpoint."""

from __future__ import annotations

import pytest
from azure.cognitiveservices.vision.customvision.prediction import models
from django.test import Client

from customvision.ids import Kind, to_uuid
from tests.conftest import make_image
from tests.customvision.msrest_contract import assert_matches
from tests.image_server import serve
from tests.predictions.conftest import RED, colour_png

pytestmark = pytest.mark.django_db

CLASSIFIED = ("id", "project", "iteration", "created", "predictions.probability",
              "predictions.tag_id", "predictions.tag_name", "predictions.tag_type")  # fmt: skip


def _post(client: Client, published, path: str, **kwargs):  # type: ignore[no-untyped-def]
    pid = to_uuid(Kind.PROJECT, published.project.pk)
    return client.post(
        f"/customvision/v3.1/prediction/{pid}/{path}",
        headers={"Prediction-Key": published.key},
        **kwargs,
    )


@pytest.mark.parametrize("nostore", [False, True])
def test_classify_image_matches_image_prediction(client, classifier, nostore) -> None:
    suffix = "/nostore" if nostore else ""
    response = _post(
        client,
        classifier,
        f"classify/iterations/prod/image{suffix}",
        data=colour_png(RED),
        content_type="application/octet-stream",
    )
    assert response.status_code == 200
    required = tuple(n for n in CLASSIFIED if not (nostore and n == "id"))
    assert_matches(response.json(), models.ImagePrediction, required=required)
    assert all("boundingBox" not in row for row in response.json()["predictions"])


@pytest.mark.parametrize("nostore", [False, True])
def test_classify_url_matches_image_prediction(client, classifier, settings, nostore) -> None:
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
    suffix = "/nostore" if nostore else ""
    with serve({"/red.png": (200, {"Content-Type": "image/png"}, colour_png(RED))}) as base:
        response = _post(
            client,
            classifier,
            f"classify/iterations/prod/url{suffix}",
            data={"url": f"{base}/red.png"},
            content_type="application/json",
        )
    assert response.status_code == 200
    required = tuple(n for n in CLASSIFIED if not (nostore and n == "id"))
    assert_matches(response.json(), models.ImagePrediction, required=required)


@pytest.mark.parametrize("nostore", [False, True])
def test_detect_image_matches_image_prediction_with_bounding_boxes(
    client, detector, nostore
) -> None:
    suffix = "/nostore" if nostore else ""
    response = _post(
        client,
        detector,
        f"detect/iterations/boxes/image{suffix}",
        data=make_image(64, 48, (20, 200, 20)),
        content_type="application/octet-stream",
    )
    assert response.status_code == 200
    required = (
        *(n for n in CLASSIFIED if not (nostore and n == "id")),
        "predictions.bounding_box.left",
        "predictions.bounding_box.top",
        "predictions.bounding_box.width",
        "predictions.bounding_box.height",
    )
    assert_matches(response.json(), models.ImagePrediction, required=required)


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [
        ("classify/iterations/prod/image", "wrong", 401),
        ("classify/iterations/nope/image", None, 404),
        ("detect/iterations/prod/image", None, 400),
        ("classify/iterations/prod/url", None, 400),  # no {"url"} body
    ],
)
def test_errors_match_custom_vision_error(client, classifier, path, key, status) -> None:
    pid = to_uuid(Kind.PROJECT, classifier.project.pk)
    response = client.post(
        f"/customvision/v3.1/prediction/{pid}/{path}",
        data=colour_png(RED),
        content_type="application/octet-stream",
        headers={"Prediction-Key": key or classifier.key},
    )
    assert response.status_code == status
    assert_matches(response.json(), models.CustomVisionError, required=("code", "message"))


def test_the_checker_catches_a_renamed_field() -> None:
    """The contract check itself: PascalCase, a retyped field and a spaced date all fail."""
    good = {
        "id": None,
        "project": "p",
        "iteration": "i",
        "created": "2024-01-02T03:04:05.123Z",
        "predictions": [{"probability": 0.5, "tagId": "t", "tagName": "n", "tagType": "Regular"}],
    }
    assert_matches(good, models.ImagePrediction, required=("project", "predictions.tag_id"))
    bad_cases = [
        {**good, "Project": "p"},
        {**good, "predictions": [{"probability": "0.5", "tagId": "t"}]},
        {**good, "created": "2024-01-02 03:04:05"},
        {**good, "predictions": [{"probability": 0.5, "tag_id": "t"}]},
    ]
    for bad in bad_cases:
        with pytest.raises(AssertionError):
            assert_matches(bad, models.ImagePrediction)
    with pytest.raises(AssertionError):
        assert_matches({**good, "project": None}, models.ImagePrediction, required=("project",))
