"""The Training API at the HTTP level (Django's test client): Custom Vision's raw REST
spellings, status codes, error shapes, and that every write lands in the same rows the browser
shows. The SDK itself drives a live server in test_training_sdk.py."""

from __future__ import annotations

import base64
import json

import pytest

from customvision.ids import Kind, from_uuid, to_uuid
from labeling.models import Image, ImageTag, Project, Region, Role, Tag
from labeling.services.api_keys import create_api_key
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory, TagFactory, UserFactory
from tests.streaming import body_of
from training.models import Iteration

BASE = "/customvision/v3.4-preview/training"


@pytest.fixture
def admin_key(db):
    user = UserFactory(username="scripter", is_staff=True)
    return user, create_api_key(user=user, kind="training", name="sdk").secret


def call(
    client, method, path, key, *, body=None, raw=None, content_type="application/json", base=BASE
):
    kwargs = {"HTTP_TRAINING_KEY": key} if key else {}
    data = raw if raw is not None else (json.dumps(body) if body is not None else b"")
    return getattr(client, method)(f"{base}{path}", data=data, content_type=content_type, **kwargs)


def png(colour=(200, 30, 30), size=16) -> bytes:
    return make_image(size, size, colour)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_project(client, key, **query) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"name": "Fruit", **query}.items())
    response = call(client, "post", f"/projects?{query}", key)
    assert response.status_code == 200, response.content
    return response.json()


# --- Routing, keys, errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "base",
    [
        "/customvision/v3.3/Training",
        "/customvision/v3.0/training",
        "/customvision/V3.2/TRAINING",
        "/customvision/v3.4-preview/training",
        "/customvision/v3.4-Preview/Training",
    ],
)
def test_every_version_spelling_lists_domains(client, admin_key, base) -> None:
    response = call(client, "get", "/domains", admin_key[1], base=base)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    kinds = {(d["name"], d["type"]) for d in response.json()}
    assert {("General", "Classification"), ("General", "ObjectDetection")} <= kinds


def test_missing_or_wrong_key_is_401_in_custom_vision_shape(client, admin_key) -> None:
    for key in (None, "lpt_wrong"):
        response = call(client, "get", "/projects", key)
        assert response.status_code == 401
        assert response.json()["code"] == "Unauthorized" and response.json()["message"]


def test_prediction_key_is_not_a_training_key(client, db) -> None:
    user = UserFactory(is_staff=True)
    secret = create_api_key(user=user, kind="prediction", name="p").secret
    assert call(client, "get", "/projects", secret).status_code == 401


def test_unknown_operation_is_a_json_404(client, admin_key) -> None:
    response = call(client, "get", "/projects/x/artifacts", admin_key[1])
    assert response.status_code == 404 and response.json()["code"] == "NotFound"


def test_unknown_or_foreign_project_is_404_not_found_project(client, admin_key) -> None:
    other = ProjectFactory()  # the key's user is no member
    for project_id in (to_uuid(Kind.PROJECT, other.pk), to_uuid(Kind.TAG, 1), "nonsense"):
        response = call(client, "get", f"/projects/{project_id}", admin_key[1])
        assert response.status_code == 404
        assert response.json()["code"] == "NotFoundProject"


# --- Projects -----------------------------------------------------------------------------------


def test_bodyless_create_project_with_json_type_makes_its_user_admin(client, admin_key) -> None:
    user, key = admin_key
    body = new_project(client, key, description="Apples%20and%20pears")

    project = Project.objects.get(pk=from_uuid(body["id"], Kind.PROJECT))
    assert project.name == "Fruit" and project.description == "Apples and pears"
    assert project.kind == Project.Kind.MULTICLASS and project.domain == Project.Domain.GENERAL
    assert project.memberships.get(user=user).role == Role.ADMIN
    assert body["settings"]["classificationType"] == "Multiclass"
    assert body["settings"]["domainId"] == "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"
    assert body["created"].endswith("Z") and "T" in body["created"]


def test_detection_and_multilabel_projects(client, admin_key) -> None:
    key = admin_key[1]
    detection = new_project(client, key, domainId="a27d5ca5-bb19-49d8-a70a-fec086c47f5b")
    multilabel = new_project(client, key, classificationType="Multilabel")
    assert Project.objects.get(pk=from_uuid(detection["id"], Kind.PROJECT)).kind == "detection"
    assert detection["settings"]["classificationType"] is None
    assert Project.objects.get(pk=from_uuid(multilabel["id"], Kind.PROJECT)).kind == "multilabel"


def test_create_project_refuses_unknown_domain_and_missing_name(client, admin_key) -> None:
    key = admin_key[1]
    response = call(
        client, "post", "/projects?name=X&domainId=c151d5b5-dd07-472a-acc8-15d29dea8518", key
    )
    assert response.status_code == 404 and response.json()["code"] == "NotFoundDomain"
    response = call(client, "post", "/projects", key)
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequestRequiredParamIsNull"
    assert not Project.objects.exists()


def test_update_get_list_and_delete_project(client, admin_key) -> None:
    key = admin_key[1]
    created = new_project(client, key)
    path = f"/projects/{created['id']}"
    response = call(
        client,
        "patch",
        path,
        key,
        body={
            "name": "Veg",
            "description": "d",
            "settings": {
                "domainId": "0732100f-1a38-4e49-a514-c9b44c697ab5",
                "classificationType": "Multiclass",
            },
        },
    )
    assert response.status_code == 200 and response.json()["name"] == "Veg"
    assert Project.objects.get().domain == Project.Domain.GENERAL_COMPACT
    assert [p["id"] for p in call(client, "get", "/projects", key).json()] == [created["id"]]
    assert call(client, "get", path, key).json()["description"] == "d"
    response = call(
        client, "patch", path, key, body={"settings": {"classificationType": "Multilabel"}}
    )
    assert response.status_code == 400
    response = call(client, "delete", path, key)
    assert response.status_code == 204 and not Project.objects.exists()
    assert call(client, "get", path, key).status_code == 404


def test_annotator_key_cannot_delete_or_create_tags(client, db) -> None:
    project = ProjectFactory()
    annotator = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    key = create_api_key(user=annotator, kind="training", name="a").secret
    path = f"/projects/{to_uuid(Kind.PROJECT, project.pk)}"
    assert call(client, "get", path, key).status_code == 200
    assert call(client, "delete", path, key).status_code == 403
    assert call(client, "post", f"{path}/tags?name=x", key).status_code == 403
    assert Project.objects.filter(pk=project.pk).exists() and not Tag.objects.exists()


# --- Tags ---------------------------------------------------------------------------------------


def test_tags_create_duplicate_update_count_delete(client, admin_key) -> None:
    key = admin_key[1]
    project_id = new_project(client, key)["id"]
    tags = f"/projects/{project_id}/tags"
    apple = call(client, "post", f"{tags}?name=apple&description=red", key).json()
    assert apple["type"] == "Regular" and apple["imageCount"] == 0 and apple["description"] == "red"
    response = call(client, "post", f"{tags}?name=Apple", key)
    assert response.status_code == 400 and response.json()["code"] == "BadRequestTagNameNotUnique"
    negative = call(client, "post", f"{tags}?name=none&type=Negative", key).json()
    assert negative["type"] == "Negative"
    response = call(client, "post", f"{tags}?name=nothing&type=Negative", key)
    assert (
        response.status_code == 400 and response.json()["code"] == "BadRequestMultipleNegativeTag"
    )
    response = call(
        client,
        "patch",
        f"{tags}/{apple['id']}",
        key,
        body={"name": "pomme", "description": "", "type": "Regular"},
    )
    assert response.status_code == 200 and response.json()["name"] == "pomme"
    assert Tag.objects.get(pk=from_uuid(apple["id"], Kind.TAG)).name == "pomme"
    assert {t["name"] for t in call(client, "get", tags, key).json()} == {"pomme", "none"}
    assert call(client, "delete", f"{tags}/{apple['id']}", key).status_code == 204
    assert call(client, "get", f"{tags}/{apple['id']}", key).json()["code"] == "NotFoundTag"


def test_an_image_with_the_negative_tag_and_another_is_refused_by_code(client, admin_key) -> None:
    key = admin_key[1]
    project_id = new_project(client, key, classificationType="Multilabel")["id"]
    red = call(client, "post", f"/projects/{project_id}/tags?name=red", key).json()["id"]
    none = call(client, "post", f"/projects/{project_id}/tags?name=none&type=Negative", key)
    batch = {
        "images": [{"name": "r.png", "contents": b64(png()), "tagIds": [red, none.json()["id"]]}]
    }
    response = call(client, "post", f"/projects/{project_id}/images/files", key, body=batch)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "BadRequestNegativeAndRegularTagOnSameImage"
    assert not Image.objects.filter(project_id=from_uuid(project_id, Kind.PROJECT)).exists()


# --- Images -------------------------------------------------------------------------------------


def _classification(client, key):
    project_id = new_project(client, key)["id"]
    red = call(client, "post", f"/projects/{project_id}/tags?name=red", key).json()["id"]
    green = call(client, "post", f"/projects/{project_id}/tags?name=green", key).json()["id"]
    return project_id, red, green


def test_file_batch_with_one_corrupt_image_is_207_and_the_rest_land(client, admin_key) -> None:
    key = admin_key[1]
    project_id, red, green = _classification(client, key)
    batch = {
        "images": [
            {"name": "r1.png", "contents": b64(png((220, 30, 30))), "tagIds": [red]},
            {"name": "g1.png", "contents": b64(png((30, 200, 40))), "tagIds": [green]},
            {"name": "broken.png", "contents": b64(png()[:40]), "tagIds": [red]},
            {"name": "notb64.png", "contents": "%%%", "tagIds": [red]},
        ]
    }
    response = call(client, "post", f"/projects/{project_id}/images/files", key, body=batch)

    assert response.status_code == 207
    body = response.json()
    assert body["isBatchSuccessful"] is False
    statuses = [(r["sourceUrl"], r["status"]) for r in body["images"]]
    assert statuses == [
        ("r1.png", "OK"),
        ("g1.png", "OK"),
        ("broken.png", "ErrorImageFormat"),
        ("notb64.png", "ErrorImageFormat"),
    ]
    first = body["images"][0]["image"]
    assert (first["width"], first["height"]) == (16, 16)
    assert [(t["tagId"], t["tagName"]) for t in first["tags"]] == [(red, "red")]
    image = Image.objects.get(pk=from_uuid(first["id"], Kind.IMAGE))
    assert image.is_training and image.is_tagged and image.original_name == "r1.png"
    assert list(image.image_tags.values_list("tag__name", flat=True)) == ["red"]
    assert Image.objects.count() == 2


def test_duplicate_content_is_ok_duplicate_with_the_stored_image(client, admin_key) -> None:
    key = admin_key[1]
    project_id, red, _ = _classification(client, key)
    batch = {"images": [{"name": "a.png", "contents": b64(png())}], "tagIds": [red]}
    first = call(client, "post", f"/projects/{project_id}/images/files", key, body=batch).json()
    again = call(client, "post", f"/projects/{project_id}/images/files", key, body=batch)
    assert again.status_code == 207 and again.json()["isBatchSuccessful"] is False
    result = again.json()["images"][0]
    assert (
        result["status"] == "OKDuplicate"
        and result["image"]["id"] == first["images"][0]["image"]["id"]
    )
    assert Image.objects.count() == 1


def test_multipart_without_filename_and_octet_stream_land_tagged(client, admin_key) -> None:
    key = admin_key[1]
    project_id, red, _ = _classification(client, key)
    data = png((10, 10, 240), size=20)
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="imageData"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = call(
        client,
        "post",
        f"/projects/{project_id}/images?tagIds={red}",
        key,
        raw=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 200, response.content
    image = Image.objects.get(pk=from_uuid(response.json()["images"][0]["image"]["id"], Kind.IMAGE))
    with image.file.open("rb") as handle:
        assert handle.read() == data  # the bytes survived, not text with U+FFFD
    assert image.image_tags.get().tag_id == from_uuid(red, Kind.TAG)

    raw = png((240, 240, 10), size=20)
    response = call(
        client,
        "post",
        f"/projects/{project_id}/images",
        key,
        raw=raw,
        content_type="application/octet-stream",
    )
    assert response.status_code == 200 and response.json()["images"][0]["status"] == "OK"
    assert Image.objects.filter(is_tagged=False).count() == 1


def test_tagged_untagged_counts_paging_and_image_tags(client, admin_key) -> None:
    key = admin_key[1]
    project_id, red, green = _classification(client, key)
    images = [{"name": f"{i}.png", "contents": b64(png((i * 20, 0, 0)))} for i in range(5)]
    created = call(
        client, "post", f"/projects/{project_id}/images/files", key, body={"images": images}
    ).json()
    ids = [r["image"]["id"] for r in created["images"]]
    p = f"/projects/{project_id}/images"
    assert call(client, "get", f"{p}/untagged/count", key).json() == 5
    assert call(client, "get", f"{p}/tagged/count", key).json() == 0

    response = call(
        client,
        "post",
        f"{p}/tags",
        key,
        body={"tags": [{"imageId": ids[0], "tagId": red}, {"imageId": ids[1], "tagId": green}]},
    )
    assert response.status_code == 200 and len(response.json()["created"]) == 2
    again = call(
        client, "post", f"{p}/tags", key, body={"tags": [{"imageId": ids[0], "tagId": red}]}
    ).json()
    assert again["duplicated"] == [{"imageId": ids[0], "tagId": red}] and again["created"] == []
    assert call(client, "get", f"{p}/tagged/count", key).json() == 2
    assert call(client, "get", f"{p}/tagged/count?tagIds={red}", key).json() == 1
    assert call(client, "get", f"{p}/count?taggingStatus=Untagged", key).json() == 3
    tags = {
        t["name"]: t["imageCount"]
        for t in call(client, "get", f"/projects/{project_id}/tags", key).json()
    }
    assert tags == {"red": 1, "green": 1}

    first = call(client, "get", f"{p}/untagged?take=2&skip=0", key).json()
    second = call(client, "get", f"{p}/untagged?take=2&skip=2", key).json()
    assert len(first) == 2 and len(second) == 1
    assert not {i["id"] for i in first} & {i["id"] for i in second}
    assert [i["id"] for i in call(client, "get", f"{p}/tagged?orderBy=Oldest", key).json()] == ids[
        :2
    ]

    assert (
        call(client, "delete", f"{p}/tags?imageIds={ids[0]}&tagIds={red}", key).status_code == 204
    )
    assert not ImageTag.objects.filter(image_id=from_uuid(ids[0], Kind.IMAGE)).exists()
    assert call(client, "get", f"{p}/tagged/count", key).json() == 1
    by_id = call(client, "get", f"{p}/id?imageIds={ids[1]},{ids[0]}", key).json()
    assert [i["id"] for i in by_id] == [ids[1], ids[0]]
    assert call(client, "delete", f"{p}?imageIds={ids[4]}", key).status_code == 204
    assert Image.objects.count() == 4


def test_image_uris_are_fetchable_without_a_key(client, admin_key) -> None:
    key = admin_key[1]
    project_id, _, _ = _classification(client, key)
    data = png((1, 2, 3))
    result = call(
        client,
        "post",
        f"/projects/{project_id}/images/files",
        key,
        body={"images": [{"contents": b64(data)}]},
    ).json()
    uri = result["images"][0]["image"]["originalImageUri"]
    client.logout()
    response = client.get(uri)
    assert response.status_code == 200 and body_of(response) == data
    assert client.get(uri[:-3] + "xyz").status_code == 404


def test_detection_regions_in_batch_and_one_by_one(client, admin_key) -> None:
    key = admin_key[1]
    project_id = new_project(client, key, domainId="da2e3a8a-40a5-4171-82f4-58522f70fbc1")["id"]
    box = call(client, "post", f"/projects/{project_id}/tags?name=box", key).json()["id"]
    region = {"tagId": box, "left": 0.1, "top": 0.2, "width": 0.5, "height": 0.25}
    batch = {"images": [{"name": "a.png", "contents": b64(png(size=40)), "regions": [region]}]}
    result = call(client, "post", f"/projects/{project_id}/images/files", key, body=batch).json()
    image = result["images"][0]["image"]
    assert result["isBatchSuccessful"] and len(image["regions"]) == 1
    assert image["regions"][0]["tagName"] == "box" and image["regions"][0]["left"] == 0.1
    first_region = image["regions"][0]["regionId"]

    p = f"/projects/{project_id}/images/regions"
    more = {
        "regions": [
            {"imageId": image["id"], **region},
            {
                "imageId": image["id"],
                "tagId": box,
                "left": 0.5,
                "top": 0.5,
                "width": 0.4,
                "height": 0.4,
            },
        ]
    }
    response = call(client, "post", p, key, body=more)
    assert response.status_code == 200
    assert len(response.json()["created"]) == 1 and len(response.json()["duplicated"]) == 1
    stored = Image.objects.get(pk=from_uuid(image["id"], Kind.IMAGE))
    assert stored.regions.count() == 2 and stored.is_tagged
    # The first box kept its id while the second was added.
    assert Region.objects.filter(pk=from_uuid(first_region, Kind.REGION)).exists()
    outside = {
        "regions": [
            {
                "imageId": image["id"],
                "tagId": box,
                "left": 0.9,
                "top": 0.9,
                "width": 0.5,
                "height": 0.5,
            }
        ]
    }
    response = call(client, "post", p, key, body=outside)
    assert response.status_code == 400 and response.json()["code"] == "BadRequestImageRegions"
    assert call(client, "delete", f"{p}?regionIds={first_region}", key).status_code == 204
    assert stored.regions.count() == 1
    assert call(client, "get", f"/projects/{project_id}/tags", key).json()[0]["imageCount"] == 1


def test_batch_label_errors_refuse_the_request_before_storing(client, admin_key) -> None:
    key = admin_key[1]
    project_id, red, green = _classification(client, key)
    both = {"images": [{"contents": b64(png()), "tagIds": [red, green]}]}
    response = call(client, "post", f"/projects/{project_id}/images/files", key, body=both)
    assert response.status_code == 400 and response.json()["code"] == "BadRequestImageTags"
    foreign = TagFactory()
    response = call(
        client,
        "post",
        f"/projects/{project_id}/images/files",
        key,
        body={"images": [{"contents": b64(png()), "tagIds": [to_uuid(Kind.TAG, foreign.pk)]}]},
    )
    assert response.status_code == 400
    too_many = {"images": [{"contents": b64(png((i, 0, 0)))} for i in range(65)]}
    response = call(client, "post", f"/projects/{project_id}/images/files", key, body=too_many)
    assert response.json()["code"] == "BadRequestExceededBatchSize"
    assert not Image.objects.exists()


def test_train_refusals_speak_custom_vision(client, admin_key) -> None:
    key = admin_key[1]
    project_id, _, _ = _classification(client, key)
    response = call(
        client,
        "post",
        f"/projects/{project_id}/train?reservedBudgetInHours=0&forceTrain=false",
        key,
    )
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequestTrainingValidationFailed"
    response = call(
        client, "post", f"/projects/{project_id}/train", key, body={"selectedTags": ["x"]}
    )
    assert response.json()["code"] == "BadRequestNotSupported"


# --- Iterations and publishing ------------------------------------------------------------------


def test_publish_overwrite_resource_id_and_unpublish(client, admin_key) -> None:
    from tests.training.conftest import make_iteration

    key = admin_key[1]
    project_id = new_project(client, key)["id"]
    project = Project.objects.get()
    first, second = make_iteration(project, number=1), make_iteration(project, number=2)
    it1, it2 = (to_uuid(Kind.ITERATION, it.pk) for it in (first, second))
    p = f"/projects/{project_id}/iterations"

    response = call(
        client, "post", f"{p}/{it1}/publish?publishName=prod&predictionId=/subs/r1", key
    )
    assert response.status_code == 200 and response.json() is True
    body = call(client, "get", f"{p}/{it1}", key).json()
    assert body["publishName"] == "prod" and body["originalPublishResourceId"] == "/subs/r1"
    taken = call(client, "post", f"{p}/{it2}/publish?publishName=prod&predictionId=r2", key)
    assert taken.status_code == 400 and taken.json()["code"] == "BadRequestInvalidPublishName"
    moved = call(
        client, "post", f"{p}/{it2}/publish?publishName=prod&predictionId=r2&overwrite=true", key
    )
    assert moved.status_code == 200
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.published_name, second.published_name) == ("", "prod")
    listed = {i["id"]: i for i in call(client, "get", p, key).json()}
    assert listed[it2]["originalPublishResourceId"] == "r2" and listed[it1]["publishName"] == ""

    refused = call(client, "delete", f"{p}/{it2}", key)
    assert refused.status_code == 400 and refused.json()["code"] == "BadRequestIterationIsPublished"
    assert call(client, "delete", f"{p}/{it2}/publish", key).status_code == 204
    again = call(client, "delete", f"{p}/{it2}/publish", key)
    assert again.json()["code"] == "BadRequestIterationNotPublished"
    assert call(client, "get", f"{p}/{it2}", key).json()["originalPublishResourceId"] is None
    renamed = call(client, "patch", f"{p}/{it2}", key, body={"name": "Best"})
    assert renamed.json()["name"] == "Best"
    assert call(client, "delete", f"{p}/{it2}", key).status_code == 204
    assert call(client, "get", f"{p}/{it2}", key).json()["code"] == "NotFoundIteration"


def test_unfinished_iteration_cannot_publish_or_report(client, admin_key) -> None:
    from tests.training.conftest import make_iteration

    key = admin_key[1]
    project_id = new_project(client, key)["id"]
    queued = make_iteration(Project.objects.get(), status="queued")
    p = f"/projects/{project_id}/iterations/{to_uuid(Kind.ITERATION, queued.pk)}"
    assert call(client, "get", p, key).json()["status"] == "Training"
    response = call(client, "post", f"{p}/publish?publishName=x&predictionId=y", key)
    assert response.json()["code"] == "BadRequestIterationIsNotTrained"
    assert (
        call(client, "get", f"{p}/performance", key).json()["code"]
        == "BadRequestIterationIsNotTrained"
    )


def test_advanced_training_budget_and_already_in_progress(client, admin_key, settings) -> None:
    key = admin_key[1]
    project_id, red, green = _classification(client, key)
    images = [
        {"contents": b64(png((200 + i, 10 * t, 5))), "tagIds": [tag]}
        for t, tag in enumerate((red, green))
        for i in range(5)
    ]
    assert (
        call(
            client, "post", f"/projects/{project_id}/images/files", key, body={"images": images}
        ).status_code
        == 200
    )
    settings.LOUPE_TRAIN_MAX_BUDGET_S = 1800
    response = call(
        client,
        "post",
        f"/projects/{project_id}/train?trainingType=Advanced&reservedBudgetInHours=1&forceTrain=false",
        key,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "Training" and body["trainingType"] == "Advanced"
    iteration = Iteration.objects.get()
    assert iteration.training_type == "advanced" and iteration.budget_s == 1800
    busy = call(client, "post", f"/projects/{project_id}/train", key)
    assert busy.json()["code"] == "BadRequestTrainingAlreadyInProgress"


def test_image_metadata_and_url_batch_refusals(client, admin_key) -> None:
    key = admin_key[1]
    project_id, _, _ = _classification(client, key)
    response = call(
        client,
        "post",
        f"/projects/{project_id}/images/files",
        key,
        body={"images": [{"contents": b64(png())}], "metadata": {"k": "v"}},
    )
    assert response.status_code == 400 and response.json()["code"] == "BadRequestNotSupported"
    # A private address is refused by the fetch rules: that image's status, not the request's.
    response = call(
        client,
        "post",
        f"/projects/{project_id}/images/urls",
        key,
        body={"images": [{"url": "http://127.0.0.1:9/a.png"}]},
    )
    assert response.status_code == 207
    assert response.json()["images"][0]["status"] == "ErrorSource"
    assert not Image.objects.exists()


def test_stored_predictions_need_a_reviewer_key(client, db) -> None:
    project = ProjectFactory()
    keys = {}
    for role in (Role.ANNOTATOR, Role.REVIEWER):
        user = MembershipFactory(project=project, role=role).user
        keys[role] = create_api_key(user=user, kind="training", name=str(role)).secret
    path = f"/projects/{to_uuid(Kind.PROJECT, project.pk)}/predictions/query"
    assert call(client, "post", path, keys[Role.ANNOTATOR], body={}).status_code == 403
    response = call(client, "post", path, keys[Role.REVIEWER], body={})
    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["token"]["continuation"] == ""
    train = f"/projects/{to_uuid(Kind.PROJECT, project.pk)}/train"
    assert call(client, "post", train, keys[Role.REVIEWER]).status_code == 403  # admins train


def test_malformed_bodies_are_400_not_500(client, admin_key) -> None:
    key = admin_key[1]
    project_id, _, _ = _classification(client, key)
    p = f"/projects/{project_id}"
    for path, raw in (
        (f"{p}/images/files", b"[" * 100_000),
        (f"{p}/images/files", b"{not json"),
        (f"{p}/images/files", b'{"images": 5}'),
        (f"{p}/images/files", b'{"images": [{"contents": "", "regions": [{"tagId": 1}]}]}'),
        (f"{p}/images/tags", b'{"tags": [{"imageId": "x", "tagId": null}]}'),
        (f"{p}/images/regions", b'{"regions": [{"imageId": 1, "tagId": 1, "left": 1e400}]}'),
        (f"{p}/predictions/query", b'{"maxCount": "many"}'),
        (f"{p}/predictions/query", b'{"startTime": "yesterday"}'),
        (f"{p}/train", b"[1]"),
    ):
        response = call(client, "post", path, key, raw=raw)
        assert response.status_code == 400, (path, raw[:40], response.content[:200])
        assert response.json()["code"].startswith("BadRequest")
    for path in (f"{p}/images?take=9999", f"{p}/images?skip=-1", f"{p}/images?orderBy=Random"):
        assert call(client, "get", path, key).status_code == 400


def test_delete_all_images(client, admin_key) -> None:
    key = admin_key[1]
    project_id, _, _ = _classification(client, key)
    images = [{"contents": b64(png((i, 9, 9)))} for i in range(3)]
    call(client, "post", f"/projects/{project_id}/images/files", key, body={"images": images})
    response = call(client, "delete", f"/projects/{project_id}/images?allImages=true", key)
    assert response.status_code == 204 and not Image.objects.exists()


def test_listing_queries_do_not_grow_with_the_images(client, admin_key) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    key = admin_key[1]
    project_id, red, _ = _classification(client, key)
    paths = (
        f"/projects/{project_id}/images?take=100",
        f"/projects/{project_id}/images/tagged?take=100",
        f"/projects/{project_id}/tags",
        "/projects",
    )

    def counts() -> list[int]:
        result = []
        for path in paths:
            with CaptureQueriesContext(connection) as queries:
                assert call(client, "get", path, key).status_code == 200
            result.append(len(queries))
        return result

    def add(start: int, count: int) -> None:
        images = [{"contents": b64(png((start + i, 7, 7))), "tagIds": [red]} for i in range(count)]
        call(client, "post", f"/projects/{project_id}/images/files", key, body={"images": images})

    add(0, 2)
    few = counts()
    add(10, 12)
    assert counts() == few


def test_retraining_unchanged_data_needs_force_train(client, admin_key) -> None:
    key = admin_key[1]
    project_id, red, green = _classification(client, key)
    images = [
        {"contents": b64(png((200 + i, 10 * t, 5))), "tagIds": [tag]}
        for t, tag in enumerate((red, green))
        for i in range(5)
    ]
    call(client, "post", f"/projects/{project_id}/images/files", key, body={"images": images})
    train = f"/projects/{project_id}/train?reservedBudgetInHours=0&forceTrain=false"
    assert call(client, "post", train, key).status_code == 200
    # As the worker leaves it (the worker itself is test_training_sdk.py's).
    Iteration.objects.update(status="completed")
    again = call(client, "post", train, key)
    assert again.status_code == 400 and again.json()["code"] == "BadRequestTrainingNotNeeded"
    forced = call(client, "post", train.replace("forceTrain=false", "forceTrain=true"), key)
    assert forced.status_code == 200 and Iteration.objects.filter(is_forced=True).count() == 1


def test_batch_past_djangos_10_mb_body_limit_lands(client, admin_key, settings) -> None:
    import io

    import numpy as np
    from PIL import Image as PILImage

    key = admin_key[1]
    project_id, red, _ = _classification(client, key)
    rng = np.random.default_rng(0)
    images = []
    for i in range(12):
        buffer = io.BytesIO()
        noise = rng.integers(0, 256, (600, 600, 3), dtype=np.uint8)
        PILImage.fromarray(noise).save(buffer, format="PNG")
        images.append({"name": f"noise{i}.png", "contents": b64(buffer.getvalue())})
    body = json.dumps({"images": images, "tagIds": [red]})
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = call(client, "post", f"/projects/{project_id}/images/files", key, raw=body.encode())
    assert response.status_code == 200, response.content[:300]
    assert Image.objects.filter(is_tagged=True).count() == 12


def test_target_export_platforms(client, admin_key) -> None:
    key = admin_key[1]
    assert new_project(client, key, targetExportPlatforms="ONNX")["name"] == "Fruit"
    response = call(client, "post", "/projects?name=X&targetExportPlatforms=ONNX,CoreML", key)
    assert response.status_code == 400
    assert response.json()["code"] == "BadRequestProjectUnsupportedExportPlatform"
    assert "CoreML" in response.json()["message"] and Project.objects.count() == 1


def test_copies_within_a_batch(client, admin_key) -> None:
    key = admin_key[1]
    project_id, _, _ = _classification(client, key)
    good, broken = b64(png((3, 3, 3))), b64(png()[:40])
    batch = {"images": [{"contents": c} for c in (good, good, broken, broken)]}
    response = call(client, "post", f"/projects/{project_id}/images/files", key, body=batch)
    results = response.json()["images"]
    assert [r["status"] for r in results] == [
        "OK",
        "OKDuplicate",
        "ErrorImageFormat",
        "ErrorImageFormat",
    ]
    assert results[0]["image"]["id"] == results[1]["image"]["id"] and Image.objects.count() == 1
