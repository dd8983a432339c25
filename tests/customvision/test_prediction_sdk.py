"""The Prediction API driven by Microsoft's own SDK (azure-cognitiveservices-vision-customvision
3.1.1, which calls /customvision/v3.1/prediction) against a live server, and by raw REST
(httpx, Microsoft's curl spellings: v3.0/Prediction, octet-stream bodies)."""

from __future__ import annotations

import io

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.prediction.models import (
    CustomVisionErrorException,
)

from customvision.ids import Kind, from_uuid, to_uuid
from labeling.models import Image
from labeling.services.api_keys import create_api_key
from predictions.models import Prediction
from tests.conftest import make_image
from tests.customvision.prediction_helpers import prediction_client
from tests.image_server import serve
from tests.predictions.conftest import BLUE, GREEN, RED, colour_png

pytestmark = pytest.mark.django_db(transaction=True)


def _tag_uuids(published) -> dict[str, str]:
    return {tag.name: to_uuid(Kind.TAG, tag.pk) for tag in published.tags}


# --- The SDK ----------------------------------------------------------------------------------


def test_sdk_classifies_and_stores(live_server, classifier) -> None:
    client = prediction_client(live_server.url, classifier.key)
    project_id = to_uuid(Kind.PROJECT, classifier.project.pk)

    result = client.classify_image(project_id, "prod", colour_png(RED), application="shop")

    names = [p.tag_name for p in result.predictions]
    assert sorted(names) == ["blue", "green", "red"] and names[0] == "red"
    probabilities = [p.probability for p in result.predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert {p.tag_name: p.tag_id for p in result.predictions} == _tag_uuids(classifier)
    assert all(p.tag_type == "Regular" and p.bounding_box is None for p in result.predictions)
    assert result.project == project_id
    assert result.iteration == to_uuid(Kind.ITERATION, classifier.iteration.pk)
    assert result.created.tzinfo is not None  # msrest read an ISO-8601 date back
    stored = Prediction.objects.get(pk=from_uuid(result.id, Kind.PREDICTION))
    assert stored.iteration_id == classifier.iteration.pk and stored.application == "shop"
    assert stored.image.source == Image.Source.PREDICTION and not stored.image.is_training


def test_sdk_classifies_an_open_file_with_no_store(live_server, classifier) -> None:
    client = prediction_client(live_server.url, classifier.key)
    project_id = to_uuid(Kind.PROJECT, classifier.project.pk)

    # An open file makes the SDK send a filename; bytes (above) send none.
    result = client.classify_image_with_no_store(project_id, "prod", io.BytesIO(colour_png(GREEN)))

    assert result.id is None and result.predictions[0].tag_name == "green"
    assert not Prediction.objects.exists() and not Image.objects.filter(is_training=False).exists()


def test_sdk_classifies_a_url_stored_and_not(live_server, classifier, settings) -> None:
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
    client = prediction_client(live_server.url, classifier.key)
    project_id = to_uuid(Kind.PROJECT, classifier.project.pk)
    routes = {"/blue.png": (200, {"Content-Type": "image/png"}, colour_png(BLUE))}
    with serve(routes) as base:
        stored = client.classify_image_url(project_id, "prod", url=f"{base}/blue.png")
        unstored = client.classify_image_url_with_no_store(
            project_id, "prod", url=f"{base}/blue.png"
        )

    assert stored.predictions[0].tag_name == unstored.predictions[0].tag_name == "blue"
    assert unstored.id is None
    prediction = Prediction.objects.get()
    assert prediction.pk == from_uuid(stored.id, Kind.PREDICTION)
    assert prediction.image.original_name == "blue.png"


def test_sdk_detects_with_normalized_boxes(live_server, detector) -> None:
    client = prediction_client(live_server.url, detector.key)
    project_id = to_uuid(Kind.PROJECT, detector.project.pk)
    picture = make_image(80, 60, (200, 40, 40))

    stored = client.detect_image(project_id, "boxes", picture)
    unstored = client.detect_image_with_no_store(project_id, "boxes", picture)

    assert stored.predictions, "the detector (score threshold 0) returns boxes"
    tag_ids = set(_tag_uuids(detector).values())
    for prediction in stored.predictions:
        box = prediction.bounding_box
        assert prediction.tag_id in tag_ids and 0.0 <= prediction.probability <= 1.0
        assert box.left >= 0.0 and box.top >= 0.0 and box.width > 0 and box.height > 0
        assert box.left + box.width <= 1.0 + 1e-6 and box.top + box.height <= 1.0 + 1e-6
    probabilities = [p.probability for p in stored.predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert unstored.id is None and len(unstored.predictions) == len(stored.predictions)
    assert Prediction.objects.get().pk == from_uuid(stored.id, Kind.PREDICTION)


def test_sdk_detect_on_a_classifier_is_400(live_server, classifier) -> None:
    client = prediction_client(live_server.url, classifier.key)
    with pytest.raises(CustomVisionErrorException) as err:
        client.detect_image(to_uuid(Kind.PROJECT, classifier.project.pk), "prod", colour_png(RED))
    assert err.value.response.status_code == 400
    assert err.value.error.code == "BadRequestWrongModelKind"


@pytest.mark.parametrize("key", ["wrong", ""])
def test_sdk_wrong_key_is_401(live_server, classifier, key) -> None:
    client = prediction_client(live_server.url, key or "x")
    with pytest.raises(CustomVisionErrorException) as err:
        client.classify_image(to_uuid(Kind.PROJECT, classifier.project.pk), "prod", colour_png(RED))
    assert err.value.response.status_code == 401
    assert err.value.error.code == "Unauthorized" and "Prediction-Key" in err.value.message
    assert not Prediction.objects.exists()


def test_sdk_unknown_publish_name_is_404(live_server, classifier) -> None:
    client = prediction_client(live_server.url, classifier.key)
    with pytest.raises(CustomVisionErrorException) as err:
        client.classify_image(to_uuid(Kind.PROJECT, classifier.project.pk), "nope", colour_png(RED))
    assert err.value.response.status_code == 404 and err.value.error.code == "NotFound"


def test_sdk_unpublished_iteration_is_404(live_server, classifier) -> None:
    from training.services.publishing import unpublish_iteration

    unpublish_iteration(iteration=classifier.iteration, by=classifier.admin)
    client = prediction_client(live_server.url, classifier.key)
    with pytest.raises(CustomVisionErrorException) as err:
        client.classify_image(to_uuid(Kind.PROJECT, classifier.project.pk), "prod", colour_png(RED))
    assert err.value.response.status_code == 404


def test_sdk_with_an_account_prediction_key(live_server, classifier, users) -> None:
    reviewer_key = create_api_key(user=users["reviewer"], kind="prediction", name="app").secret
    annotator_key = create_api_key(user=users["annotator"], kind="prediction", name="app").secret
    outsider_key = create_api_key(user=users["non_member"], kind="prediction", name="app").secret
    project_id = to_uuid(Kind.PROJECT, classifier.project.pk)

    result = prediction_client(live_server.url, reviewer_key).classify_image(
        project_id, "prod", colour_png(RED)
    )
    assert result.predictions[0].tag_name == "red" and result.id is not None
    annotator = prediction_client(live_server.url, annotator_key)
    assert annotator.classify_image_with_no_store(project_id, "prod", colour_png(RED)).id is None
    with pytest.raises(CustomVisionErrorException) as err:
        annotator.classify_image(project_id, "prod", colour_png(RED))
    assert err.value.response.status_code == 403
    with pytest.raises(CustomVisionErrorException) as err:
        prediction_client(live_server.url, outsider_key).classify_image(
            project_id, "prod", colour_png(RED)
        )
    assert err.value.response.status_code == 401
    assert Prediction.objects.count() == 1


def test_sdk_bad_image_is_400_with_its_code(live_server, classifier) -> None:
    client = prediction_client(live_server.url, classifier.key)
    with pytest.raises(CustomVisionErrorException) as err:
        client.classify_image(to_uuid(Kind.PROJECT, classifier.project.pk), "prod", b"not an image")
    assert err.value.response.status_code == 400
    assert err.value.error.code == "BadRequestImageFormat"


# --- Raw REST ---------------------------------------------------------------------------------


def test_rest_v30_capital_prediction_with_an_octet_stream_body(live_server, classifier) -> None:
    url = (
        f"{live_server.url}/customvision/v3.0/Prediction/"
        f"{to_uuid(Kind.PROJECT, classifier.project.pk)}/classify/iterations/prod/image"
    )
    response = httpx.post(
        url,
        content=colour_png(GREEN),
        headers={"Prediction-Key": classifier.key, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["predictions"][0]["tagName"] == "green"
    assert body["created"].endswith("Z") and "T" in body["created"]
    assert Prediction.objects.get().pk == from_uuid(body["id"], Kind.PREDICTION)


@pytest.mark.parametrize(
    "prefix", ["v3.1/prediction", "v3.0/PREDICTION", "V3.1/PreDiction", "V3.0/Prediction"]
)
def test_rest_version_and_segment_case_are_free_and_ids_may_be_integers(
    live_server, classifier, prefix
) -> None:
    url = (
        f"{live_server.url}/customvision/{prefix}/{classifier.project.pk}"
        "/classify/iterations/prod/image/nostore"
    )
    response = httpx.post(url, content=colour_png(RED), headers={"Prediction-Key": classifier.key})
    assert response.status_code == 200, response.text
    assert response.json()["project"] == to_uuid(Kind.PROJECT, classifier.project.pk)


@pytest.mark.parametrize(
    "path",
    [
        "v3.2/prediction/{pid}/classify/iterations/prod/image",  # no such prediction version
        "v3.1/prediction/{pid}/classify/iterations/prod/image/",  # trailing slash
        "v3.1/prediction/{pid}/segment/iterations/prod/image",
    ],
)
def test_rest_other_paths_are_404_json(live_server, classifier, path) -> None:
    url = f"{live_server.url}/customvision/" + path.format(pid=classifier.project.pk)
    response = httpx.post(url, content=colour_png(RED), headers={"Prediction-Key": classifier.key})
    assert response.status_code == 404
    assert not Prediction.objects.exists()


def test_rest_a_tag_uuid_is_not_a_project_id(live_server, classifier) -> None:
    tag_uuid = to_uuid(Kind.TAG, classifier.project.pk)  # same integer, wrong kind
    url = (
        f"{live_server.url}/customvision/v3.1/prediction/{tag_uuid}/classify/iterations/prod/image"
    )
    response = httpx.post(url, content=colour_png(RED), headers={"Prediction-Key": classifier.key})
    assert response.status_code == 401 and response.json()["code"] == "Unauthorized"


def test_rest_url_route_refuses_loopback_unless_allowed(live_server, classifier, settings) -> None:
    routes = {"/red.png": (200, {"Content-Type": "image/png"}, colour_png(RED))}
    base_url = (
        f"{live_server.url}/customvision/v3.1/prediction/"
        f"{to_uuid(Kind.PROJECT, classifier.project.pk)}/classify/iterations/prod/url"
    )
    headers = {"Prediction-Key": classifier.key}
    with serve(routes) as base:
        settings.LOUPE_FETCH_ALLOW_NETWORKS = ""
        refused = httpx.post(base_url, json={"url": f"{base}/red.png"}, headers=headers)
        assert refused.status_code == 400
        assert refused.json()["code"] == "BadRequestImageUrl"
        assert "private" in refused.json()["message"]
        settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
        allowed = httpx.post(base_url, json={"url": f"{base}/red.png"}, headers=headers)
    assert allowed.status_code == 200 and allowed.json()["predictions"][0]["tagName"] == "red"
    assert Prediction.objects.count() == 1


def test_rest_url_redirect_to_a_private_address_is_refused(
    live_server, classifier, settings
) -> None:
    """Each redirect is checked again: an allowed host cannot bounce the fetch inward."""
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.2/32"
    with serve({"/red.png": (200, {"Content-Type": "image/png"}, colour_png(RED))}) as inner:
        hop = {"/go": (302, {"Location": f"{inner}/red.png"}, b"")}
        with serve(hop, host="127.0.0.2") as outer:
            response = httpx.post(
                f"{live_server.url}/customvision/v3.1/prediction/"
                f"{classifier.project.pk}/classify/iterations/prod/url/nostore",
                json={"url": f"{outer}/go"},
                headers={"Prediction-Key": classifier.key},
            )
    assert response.status_code == 400 and response.json()["code"] == "BadRequestImageUrl"
    assert "private, loopback or link-local" in response.json()["message"]


@pytest.mark.parametrize("body", [b"", b"[]", b'{"uri": "x"}', b"{not json"])
def test_rest_url_route_needs_a_url_body(live_server, classifier, body) -> None:
    response = httpx.post(
        f"{live_server.url}/customvision/v3.1/prediction/{classifier.project.pk}"
        "/classify/iterations/prod/url",
        content=body,
        headers={"Prediction-Key": classifier.key, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["code"] == "BadRequest"


def test_rest_image_over_the_limit_is_refused_before_it_is_read(
    live_server, classifier, settings
) -> None:
    settings.LOUPE_MAX_PREDICTION_BYTES = 1000
    response = httpx.post(
        f"{live_server.url}/customvision/v3.1/prediction/{classifier.project.pk}"
        "/classify/iterations/prod/image",
        content=b"\0" * 200_000,
        headers={"Prediction-Key": classifier.key},
    )
    assert response.status_code == 400 and response.json()["code"] == "BadRequestImageSizeBytes"


def test_rest_image_larger_than_djangos_body_limit_is_read(
    live_server, classifier, settings
) -> None:
    """These routes read past DATA_UPLOAD_MAX_MEMORY_SIZE: their own limit applies."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = httpx.post(
        f"{live_server.url}/customvision/v3.1/prediction/{classifier.project.pk}"
        "/classify/iterations/prod/image",
        files={"imageData": ("", make_image(120, 120, (250, 10, 10), "BMP"))},
        headers={"Prediction-Key": classifier.key},
    )
    assert response.status_code == 200, response.text


def test_native_alias_answers_loupes_integer_ids(client, classifier) -> None:
    response = client.post(
        f"/api/predict/{classifier.project.pk}/classify/iterations/prod/image",
        data=colour_png(RED),
        content_type="application/octet-stream",
        headers={"Prediction-Key": classifier.key},
    )
    body = response.json()
    assert response.status_code == 200 and body["project"] == classifier.project.pk
    assert {row["tagName"]: row["tagId"] for row in body["predictions"]} == {
        tag.name: tag.pk for tag in classifier.tags
    }
    assert Prediction.objects.get().pk == body["id"]
