"""Contract: every Training API answer has exactly the JSON fields, and the types, of the
SDK's msrest model for it (azure-cognitiveservices-vision-customvision 3.1.1), walked from each
model's `_attribute_map`. msrest silently leaves a misspelled or missing field `None`, so a
renamed field must fail here, not in a customer's script."""

from __future__ import annotations

import base64
import inspect
import json
from datetime import datetime
from typing import Any

import pytest
from azure.cognitiveservices.vision.customvision.training import models
from django.core.files.base import ContentFile
from django.urls import URLPattern, resolve
from msrest.serialization import Deserializer

from customvision import training_urls
from customvision.ids import Kind, from_uuid, to_uuid
from labeling.models import Project
from labeling.services.api_keys import create_api_key
from predictions.model_cache import model_cache
from tests.conftest import make_image
from tests.factories import UserFactory
from tests.image_server import serve
from tests.predictions.conftest import (  # noqa: F401  (colour_artifact is a fixture)
    TINY_BACKBONE,
    colour_artifact,
)
from tests.training.conftest import make_iteration
from training.models import Iteration, IterationImage, IterationScore, IterationTag

BASE = "/customvision/v3.4-preview/training"
MODELS = {name: cls for name, cls in vars(models).items() if isinstance(cls, type)}
# Fields a shape may leave out (msrest reads them as None). The Training API's own shapes send
# every field (`null` when Loupe has no value); a prediction row shared with the Prediction API
# (customvision.prediction.prediction_result) has a boundingBox only for detection.
OPTIONAL: dict[str, set[str]] = {"Prediction": {"boundingBox"}}


# What the contract tests check, one line per (method, route name) of customvision/
# training_urls.py that answers a JSON body: the msrest model its answer is read as. `conforms`
# refuses to check a route not listed here (or with another model), and
# test_every_training_route_with_a_body_is_under_contract fails a route added without a line.
# fmt: off
CONTRACT: dict[tuple[str, str], str] = {
    ("GET", "training-domains"):                   "[Domain]",
    ("GET", "training-domain"):                    "Domain",
    ("GET", "training-projects"):                  "[Project]",
    ("POST", "training-projects"):                 "Project",
    ("GET", "training-project"):                   "Project",
    ("PATCH", "training-project"):                 "Project",
    ("GET", "training-tags"):                      "[Tag]",
    ("POST", "training-tags"):                     "Tag",
    ("GET", "training-tag"):                       "Tag",
    ("PATCH", "training-tag"):                     "Tag",
    ("GET", "training-images"):                    "[Image]",
    ("POST", "training-images"):                   "ImageCreateSummary",
    ("POST", "training-image-files"):              "ImageCreateSummary",
    ("POST", "training-image-urls"):               "ImageCreateSummary",
    ("POST", "training-image-predictions"):        "ImageCreateSummary",
    ("GET", "training-images-by-id"):              "[Image]",
    ("GET", "training-image-count"):               "int",
    ("GET", "training-tagged"):                    "[Image]",
    ("GET", "training-tagged-count"):              "int",
    ("GET", "training-untagged"):                  "[Image]",
    ("GET", "training-untagged-count"):            "int",
    ("POST", "training-image-tags"):               "ImageTagCreateSummary",
    ("POST", "training-image-regions"):            "ImageRegionCreateSummary",
    ("POST", "training-train"):                    "Iteration",
    ("GET", "training-iterations"):                "[Iteration]",
    ("GET", "training-iteration"):                 "Iteration",
    ("PATCH", "training-iteration"):               "Iteration",
    ("POST", "training-publish"):                  "bool",
    ("GET", "training-performance"):               "IterationPerformance",
    ("GET", "training-image-performances"):        "[ImagePerformance]",
    ("GET", "training-image-performance-count"):   "int",
    ("GET", "training-export"):                    "[Export]",
    ("POST", "training-export"):                   "Export",
    ("POST", "training-quicktest-image"):          "ImagePrediction",
    ("POST", "training-quicktest-url"):            "ImagePrediction",
    ("POST", "training-predictions-query"):        "PredictionQueryResult",
    ("POST", "training-suggestions"):              "[SuggestedTagAndRegion]",
}
# fmt: on
# Answers without a JSON body (204 No Content, as Custom Vision's deletes): nothing to compare.
NO_BODY = {
    ("DELETE", "training-project"),
    ("DELETE", "training-tag"),
    ("DELETE", "training-images"),
    ("DELETE", "training-image-tags"),
    ("DELETE", "training-image-regions"),
    ("DELETE", "training-iteration"),
    ("DELETE", "training-publish"),
    ("DELETE", "training-predictions"),
}
# Routes that are not SDK operations, each with its reason.
NOT_OPERATIONS = {
    "training-media": "A signed image address the Image models' URIs point at: image bytes, "
    "no msrest model (tests/customvision/test_training_rest.py).",
    "training-unsupported": "The catch-all: a CustomVisionError 404 for any other address.",
}
ERROR_MODEL = "CustomVisionError"


def check(value: Any, type_name: str, where: str = "body") -> None:
    """Fail unless `value` is exactly what msrest expects for `type_name`."""
    if value is None:
        return
    if type_name.startswith("["):
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        for index, item in enumerate(value):
            check(item, type_name[1:-1], f"{where}[{index}]")
    elif type_name.startswith("{"):
        assert isinstance(value, dict), f"{where}: expected an object"
        for key, item in value.items():
            check(item, type_name[1:-1], f"{where}.{key}")
    elif type_name == "str":
        assert isinstance(value, str), f"{where}: expected a string, got {value!r}"
    elif type_name == "bool":
        assert isinstance(value, bool), f"{where}: expected a boolean, got {value!r}"
    elif type_name == "int":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
    elif type_name == "float":
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{where}"
    elif type_name == "iso-8601":
        assert isinstance(value, str) and "T" in value and value.endswith("Z"), f"{where}: {value}"
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        model = MODELS[type_name]
        assert isinstance(value, dict), f"{where}: expected a {type_name} object"
        keys = {spec["key"]: spec["type"] for spec in model._attribute_map.values()}
        unknown = set(value) - set(keys)
        assert not unknown, f"{where}: fields not in {type_name}: {sorted(unknown)}"
        missing = set(keys) - set(value) - OPTIONAL.get(type_name, set())
        assert not missing, f"{where}: {type_name} fields missing: {sorted(missing)}"
        for key, item in value.items():
            check(item, keys[key], f"{where}.{key}")


def conforms(response, type_name: str, status: int = 200) -> Any:
    assert response.status_code == status, response.content[:500]
    if type_name != ERROR_MODEL:  # any route may answer an error
        method = response.request["REQUEST_METHOD"]
        route = (method, resolve(response.request["PATH_INFO"]).url_name)
        assert CONTRACT.get(route) == type_name, f"{route} is not in CONTRACT as {type_name}"
    body = response.json()
    check(body, type_name)
    # And the SDK's own deserializer reads it without an error.
    Deserializer(MODELS)(type_name, body)
    return body


@pytest.fixture
def api(client, db):
    user = UserFactory(is_staff=True)
    key = create_api_key(user=user, kind="training", name="contract").secret

    def call(method: str, path: str, body: Any = None, content_type: str = "application/json"):
        data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else b"")
        return getattr(client, method)(
            f"{BASE}{path}", data=data, content_type=content_type, HTTP_TRAINING_KEY=key
        )

    return call


def png(colour, size: int = 24) -> str:
    return base64.b64encode(make_image(size, size, colour)).decode()


@pytest.fixture
def classification(api, colour_artifact, settings, tmp_path):  # noqa: F811
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    model_cache().clear()
    project = conforms(api("post", "/projects?name=Contract"), "Project")
    pid = project["id"]
    tags = [
        conforms(api("post", f"/projects/{pid}/tags?name={n}"), "Tag")["id"]
        for n in ("red", "green", "blue")
    ]
    images = [
        {"name": f"{i}.png", "contents": png((200 - 40 * i, 30, 40 * i)), "tagIds": [tags[i % 3]]}
        for i in range(4)
    ]
    upload = conforms(
        api("post", f"/projects/{pid}/images/files", {"images": images}), "ImageCreateSummary"
    )
    project_row = Project.objects.get()
    iteration = make_iteration(
        project_row,
        tags=["red", "green", "blue"],
        rows=[([0], [0.9, 0.05, 0.05]), ([1], [0.2, 0.7, 0.1]), ([2], [0.1, 0.1, 0.8])],
    )
    iteration.backbone = TINY_BACKBONE
    for it_tag, tag in zip(
        iteration.tags.order_by("index"), project_row.tags.order_by("pk"), strict=True
    ):
        it_tag.tag = tag
        it_tag.save(update_fields=["tag"])
    iteration.artifact.save("model.pt", ContentFile(colour_artifact), save=False)
    iteration.save(update_fields=["artifact", "backbone"])
    return {
        "pid": pid,
        "tags": tags,
        "images": [r["image"]["id"] for r in upload["images"]],
        "iid": to_uuid(Kind.ITERATION, iteration.pk),
    }


def test_domains_projects_and_tags_match_the_sdk_models(api, classification) -> None:
    pid, tag = classification["pid"], classification["tags"][0]
    domains = conforms(api("get", "/domains"), "[Domain]")
    conforms(api("get", f"/domains/{domains[0]['id']}"), "Domain")
    conforms(api("get", "/projects"), "[Project]")
    conforms(api("get", f"/projects/{pid}"), "Project")
    conforms(api("patch", f"/projects/{pid}", {"name": "C2", "description": ""}), "Project")
    conforms(api("get", f"/projects/{pid}/tags"), "[Tag]")
    conforms(api("get", f"/projects/{pid}/tags/{tag}"), "Tag")
    conforms(api("get", f"/projects/{pid}/tags?iterationId={classification['iid']}"), "[Tag]")
    conforms(api("patch", f"/projects/{pid}/tags/{tag}", {"name": "rouge"}), "Tag")


def test_image_endpoints_match_the_sdk_models(api, classification, settings) -> None:
    pid, images, tags = classification["pid"], classification["images"], classification["tags"]
    for path in ("images", "images/tagged", "images/untagged", f"images/id?imageIds={images[0]}"):
        conforms(api("get", f"/projects/{pid}/{path}"), "[Image]")
    for path in ("images/count", "images/tagged/count", "images/untagged/count"):
        assert isinstance(conforms(api("get", f"/projects/{pid}/{path}"), "int"), int)
    boundary = "xyz"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="imageData"\r\n\r\n'.encode()
        + base64.b64decode(png((5, 5, 5)))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conforms(
        api(
            "post",
            f"/projects/{pid}/images",
            multipart,
            f"multipart/form-data; boundary={boundary}",
        ),
        "ImageCreateSummary",
    )
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
    with serve(
        {"/a.png": (200, {"Content-Type": "image/png"}, base64.b64decode(png((9, 9, 9))))}
    ) as url:
        body = {"images": [{"url": f"{url}/a.png"}, {"url": f"{url}/missing.png"}]}
        summary = conforms(
            api("post", f"/projects/{pid}/images/urls", body), "ImageCreateSummary", 207
        )
    assert [r["status"] for r in summary["images"]] == ["OK", "ErrorSource"]
    pairs = {"tags": [{"imageId": images[0], "tagId": tags[1]}]}
    conforms(api("post", f"/projects/{pid}/images/tags", pairs), "ImageTagCreateSummary")
    error = conforms(
        api("get", f"/projects/{pid}/tags/{to_uuid(Kind.TAG, 999)}"), "CustomVisionError", 404
    )
    assert error["code"] == "NotFoundTag"


def test_iteration_endpoints_match_the_sdk_models(api, classification) -> None:
    pid, iid = classification["pid"], classification["iid"]
    conforms(api("get", f"/projects/{pid}/iterations"), "[Iteration]")
    conforms(api("get", f"/projects/{pid}/iterations/{iid}"), "Iteration")
    conforms(api("patch", f"/projects/{pid}/iterations/{iid}", {"name": "Best"}), "Iteration")
    performance = conforms(
        api("get", f"/projects/{pid}/iterations/{iid}/performance?threshold=0.5"),
        "IterationPerformance",
    )
    assert [t["name"] for t in performance["perTagPerformance"]] == ["red", "green", "blue"]
    rows = conforms(
        api("get", f"/projects/{pid}/iterations/{iid}/performance/images"), "[ImagePerformance]"
    )
    assert len(rows) == 3
    conforms(api("get", f"/projects/{pid}/iterations/{iid}/performance/images/count"), "int")
    assert conforms(api("get", f"/projects/{pid}/iterations/{iid}/export"), "[Export]") == []
    export = conforms(
        api("post", f"/projects/{pid}/iterations/{iid}/export?platform=ONNX"), "Export"
    )
    assert export["status"] == "Exporting" and export["downloadUri"] is None
    assert conforms(api("get", f"/projects/{pid}/iterations/{iid}/export"), "[Export]") == [export]
    refused = conforms(
        api("post", f"/projects/{pid}/iterations/{iid}/export?platform=CoreML"),
        "CustomVisionError",
        400,
    )
    assert refused["code"] == "BadRequestNotSupported" and "CoreML" in refused["message"]
    assert (
        conforms(
            api("post", f"/projects/{pid}/iterations/{iid}/publish?publishName=p&predictionId=x"),
            "bool",
        )
        is True
    )
    # Training a project whose data is too small answers an error, in the error's shape.
    conforms(api("post", f"/projects/{pid}/train"), "CustomVisionError", 400)


def test_prediction_endpoints_match_the_sdk_models(api, classification) -> None:
    pid, iid, images = classification["pid"], classification["iid"], classification["images"]
    data = base64.b64decode(png((220, 30, 30), 40))
    stored = conforms(
        api(
            "post",
            f"/projects/{pid}/quicktest/image?iterationId={iid}",
            data,
            "application/octet-stream",
        ),
        "ImagePrediction",
    )
    assert stored["predictions"][0]["tagName"] == "red"
    unstored = conforms(
        api(
            "post", f"/projects/{pid}/quicktest/image?store=false", data, "application/octet-stream"
        ),
        "ImagePrediction",
    )
    assert unstored["id"] is None
    result = conforms(
        api("post", f"/projects/{pid}/predictions/query", {"orderBy": "Newest"}),
        "PredictionQueryResult",
    )
    assert [r["id"] for r in result["results"]] == [stored["id"]]
    # Images 1..3 were tagged at upload; untag one so it can get a suggestion.
    api(
        "delete",
        f"/projects/{pid}/images/tags?imageIds={images[3]}&tagIds={classification['tags'][0]}",
    )
    suggestions = conforms(
        api(
            "post",
            f"/projects/{pid}/tagsandregions/suggestions?iterationId={iid}&imageIds={images[3]}",
        ),
        "[SuggestedTagAndRegion]",
    )
    assert len(suggestions) == 1


def test_detection_endpoints_match_the_sdk_models(api, db) -> None:
    project = conforms(
        api("post", "/projects?name=Boxes&domainId=da2e3a8a-40a5-4171-82f4-58522f70fbc1"), "Project"
    )
    pid = project["id"]
    tag = conforms(api("post", f"/projects/{pid}/tags?name=box"), "Tag")["id"]
    region = {"tagId": tag, "left": 0.25, "top": 0.25, "width": 0.5, "height": 0.5}
    batch = {"images": [{"name": "a.png", "contents": png((1, 2, 3), 32), "regions": [region]}]}
    upload = conforms(api("post", f"/projects/{pid}/images/files", batch), "ImageCreateSummary")
    image_id = upload["images"][0]["image"]["id"]
    more = {
        "regions": [
            {
                "imageId": image_id,
                "tagId": tag,
                "left": 0.0,
                "top": 0.0,
                "width": 0.2,
                "height": 0.2,
            }
        ]
    }
    conforms(api("post", f"/projects/{pid}/images/regions", more), "ImageRegionCreateSummary")

    row = Project.objects.get()
    iteration = Iteration.objects.create(
        project=row, number=1, name="Iteration 1", status="completed", backbone="lite0"
    )
    IterationTag.objects.create(
        iteration=iteration, tag=row.tags.get(), name="box", index=0, image_count=1
    )
    snapshot = IterationImage.objects.create(
        iteration=iteration,
        image=row.images.get(),
        sha256="x",
        file_name="x",
        boxes=[[0, 0.25, 0.25, 0.5, 0.5]],
        labels=[0],
    )
    IterationScore.objects.create(
        iteration=iteration,
        iteration_image=snapshot,
        scores=[0.8],
        detections=[[0, 0.8, 0.2, 0.25, 0.5, 0.5]],
    )
    iid = to_uuid(Kind.ITERATION, iteration.pk)
    performance = conforms(
        api(
            "get",
            f"/projects/{pid}/iterations/{iid}/performance?threshold=0.5&overlapThreshold=0.3",
        ),
        "IterationPerformance",
    )
    assert performance["perTagPerformance"][0]["recall"] == 1.0
    images = conforms(
        api("get", f"/projects/{pid}/iterations/{iid}/performance/images"), "[ImagePerformance]"
    )
    assert images[0]["predictions"][0]["boundingBox"]["left"] == 0.2
    assert images[0]["regions"][0]["tagName"] == "box"


def test_quick_test_url_matches_the_sdk_model(api, classification, settings) -> None:
    pid = classification["pid"]
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
    data = base64.b64decode(png((30, 200, 40), 40))
    with serve({"/g.png": (200, {"Content-Type": "image/png"}, data)}) as url:
        body = {"url": f"{url}/g.png"}
        result = conforms(
            api("post", f"/projects/{pid}/quicktest/url?store=false", body), "ImagePrediction"
        )
    assert result["predictions"][0]["tagName"] == "green" and result["id"] is None


def test_images_from_predictions_move_stored_predictions_into_training(api, classification) -> None:
    from labeling.models import Image

    pid, iid, red = classification["pid"], classification["iid"], classification["tags"][0]
    fresh = base64.b64decode(png((230, 20, 20), 40))
    copy = base64.b64decode(png((200, 30, 0)))  # the bytes of uploaded image 0
    stored = [
        api(
            "post",
            f"/projects/{pid}/quicktest/image?iterationId={iid}",
            d,
            "application/octet-stream",
        ).json()["id"]
        for d in (fresh, copy)
    ]
    unknown = to_uuid(Kind.PREDICTION, 10**6)
    body = {"images": [{"id": stored[0]}, {"id": stored[1]}, {"id": unknown}], "tagIds": [red]}
    summary = conforms(
        api("post", f"/projects/{pid}/images/predictions", body), "ImageCreateSummary", 207
    )
    assert [r["status"] for r in summary["images"]] == ["OK", "OKDuplicate", "ErrorSource"]
    assert summary["images"][1]["image"]["id"] == classification["images"][0]
    promoted = Image.objects.get(pk=from_uuid(summary["images"][0]["image"]["id"], Kind.IMAGE))
    assert promoted.is_training and list(
        promoted.image_tags.values_list("tag__name", flat=True)
    ) == ["red"]
    left = api("post", f"/projects/{pid}/predictions/query", {}).json()["results"]
    assert [r["id"] for r in left] == [stored[1]]


def test_prediction_query_pages_and_filters(api, classification) -> None:
    pid, iid, red = classification["pid"], classification["iid"], classification["tags"][0]
    ids = []
    for colour in ((230, 20, 20), (20, 210, 30), (20, 40, 230)):
        data = base64.b64decode(png(colour, 40))
        path = f"/projects/{pid}/quicktest/image?iterationId={iid}"
        ids.append(api("post", path, data, "application/octet-stream").json()["id"])
    query = f"/projects/{pid}/predictions/query"
    first = conforms(api("post", query, {"maxCount": 2}), "PredictionQueryResult")
    assert [r["id"] for r in first["results"]] == ids[::-1][:2]
    assert first["token"]["continuation"] == "2"
    rest = api("post", query, {**first["token"]}).json()
    assert [r["id"] for r in rest["results"]] == [ids[0]] and rest["token"]["continuation"] == ""
    oldest = api("post", query, {"orderBy": "Oldest"}).json()["results"]
    assert [r["id"] for r in oldest] == ids
    red_only = {"tags": [{"id": red, "minThreshold": 0.5, "maxThreshold": 1.0}]}
    assert [r["id"] for r in api("post", query, red_only).json()["results"]] == [ids[0]]
    assert api("post", query, {"application": "other-app"}).json()["results"] == []
    bad = api("post", query, {"orderBy": "Sideways"})
    assert (
        bad.status_code == 400
        and bad.json()["code"] == "BadRequestPredictionInvalidQueryParameters"
    )


def test_train_answer_matches_the_sdk_model(api, db) -> None:
    pid = conforms(api("post", "/projects?name=Train"), "Project")["id"]
    tags = [api("post", f"/projects/{pid}/tags?name={n}").json()["id"] for n in ("a", "b")]
    images = [
        {"contents": png((20 + 40 * t, 9 * i, 100)), "tagIds": [tag]}
        for t, tag in enumerate(tags)
        for i in range(5)
    ]
    conforms(api("post", f"/projects/{pid}/images/files", {"images": images}), "ImageCreateSummary")
    iteration = conforms(api("post", f"/projects/{pid}/train?reservedBudgetInHours=0"), "Iteration")
    assert iteration["status"] == "Training" and iteration["trainedAt"] is None


def _training_routes() -> dict[str, set[str] | None]:
    """Each Training API route name and the methods its `endpoint` serves (None: not one)."""
    routes: dict[str, set[str] | None] = {}
    for pattern in training_urls.urlpatterns:
        assert isinstance(pattern, URLPattern) and pattern.name, f"unnamed route {pattern}"
        view = inspect.unwrap(pattern.callback)  # csrf_exempt's wrapper
        handlers = inspect.getclosurevars(view).nonlocals.get("handlers")
        routes[pattern.name] = set(handlers) if handlers else None
    return routes


def test_every_training_route_with_a_body_is_under_contract() -> None:
    """A route of customvision/training_urls.py whose answer has a JSON body must have a CONTRACT
    line (and a `conforms` check above), so a renamed field in a new operation fails here."""
    routes = _training_routes()
    served = set()
    for name, methods in routes.items():
        if methods is None:
            assert name in NOT_OPERATIONS, f"{name}: not an endpoint() and not in NOT_OPERATIONS"
            continue
        served |= {(method, name) for method in methods}
    missing = sorted(served - set(CONTRACT) - NO_BODY)
    assert not missing, f"Training API routes without a contract check: {missing}"
    stale = sorted((set(CONTRACT) | NO_BODY) - served)
    assert not stale, f"CONTRACT/NO_BODY lines for routes that no longer exist: {stale}"
    assert not set(CONTRACT) & NO_BODY, "a route is both checked and bodiless"
    assert set(NOT_OPERATIONS) <= set(routes), "NOT_OPERATIONS names a route that is gone"
    unknown = {model for model in CONTRACT.values() if model.strip("[]") not in MODELS}
    assert unknown <= {"int", "bool"}, f"not msrest models: {sorted(unknown)}"
