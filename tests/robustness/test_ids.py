"""Ids past a 64-bit integer (or not ids at all) answer 400 naming the field, never a 500.

Before: an OverflowError from the database driver, and an HTML error page from the JSON API.
"""

from __future__ import annotations

import pytest

from labeling.models import ImageTag
from project.ids import MAX_ID, InvalidId, parse_id, parse_ids
from tests.factories import ImageFactory, TagFactory

pytestmark = pytest.mark.django_db

HUGE = 2**64  # past BIGINT: the database driver cannot even bind it
HUGE_IDS = [MAX_ID + 1, HUGE, 10**400]


@pytest.fixture
def setup(api_client, project, users):
    api_client.force_authenticate(users["admin"])
    image = ImageFactory(project=project)
    tag = TagFactory(project=project, name="cat")
    return api_client, project, image, tag


def _assert_json_400_naming(response, field: str) -> None:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] in {"invalid", "invalid_id"}
    assert field in body["message"]


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_bulk_action_with_huge_image_id_is_400_naming_image_ids(setup, huge):
    client, project, image, tag = setup
    response = client.post(
        f"/api/projects/{project.pk}/images/bulk/",
        {"action": "tag", "image_ids": [image.pk, huge], "tag_ids": [tag.pk]},
        format="json",
    )
    _assert_json_400_naming(response, "image_ids")
    assert not ImageTag.objects.exists()


def test_bulk_action_with_huge_tag_id_is_400_naming_tag_ids(setup):
    client, project, image, _ = setup
    response = client.post(
        f"/api/projects/{project.pk}/images/bulk/",
        {"action": "tag", "image_ids": [image.pk], "tag_ids": [HUGE]},
        format="json",
    )
    _assert_json_400_naming(response, "tag_ids")


def test_image_tags_put_with_huge_tag_id_is_400(setup):
    client, project, image, _ = setup
    response = client.put(
        f"/api/projects/{project.pk}/images/{image.pk}/tags/",
        {"tag_ids": [HUGE], "version": None},
        format="json",
    )
    _assert_json_400_naming(response, "tag_ids")


def test_image_tags_post_with_huge_tag_id_is_400(setup):
    client, project, image, _ = setup
    response = client.post(
        f"/api/projects/{project.pk}/images/{image.pk}/tags/", {"tag_id": HUGE}, format="json"
    )
    _assert_json_400_naming(response, "tag_id")


def test_upload_with_huge_tag_id_is_400_and_stores_nothing(setup, image_bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client, project, _, _ = setup
    response = client.post(
        f"/api/projects/{project.pk}/images/upload/",
        {
            "files": [SimpleUploadedFile("a.png", image_bytes(), "image/png")],
            "tag_ids": [str(HUGE)],
        },
        format="multipart",
    )
    _assert_json_400_naming(response, "tag_ids")
    assert project.images.count() == 1  # only the fixture's


@pytest.mark.parametrize("query", [f"tag={HUGE}", f"after={HUGE}", "tag=1.5", "after=-3"])
def test_image_list_with_bad_id_in_query_is_400(setup, query):
    client, project, _, _ = setup
    response = client.get(f"/api/projects/{project.pk}/images/?{query}")
    _assert_json_400_naming(response, query.split("=")[0])


@pytest.mark.parametrize(
    "path",
    [
        f"/api/projects/{HUGE}/images/",
        "/api/projects/1/images/{huge}/",
        "/api/projects/1/tags/{huge}/",
        "/api/no-such-route/",
    ],
)
def test_api_answers_json_404_for_huge_ids_in_the_path_and_unknown_routes(setup, path):
    client, project, _, _ = setup
    path = path.replace("/1/", f"/{project.pk}/").replace("{huge}", str(HUGE))
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "not_found"


def test_prediction_api_with_huge_project_id_is_not_a_500(api_client):
    response = api_client.post(
        f"/api/predict/{HUGE}/classify/iterations/x/image",
        data=b"x",
        content_type="application/octet-stream",
        HTTP_PREDICTION_KEY="nope",
    )
    assert response.status_code in {401, 404}
    assert response["Content-Type"].startswith("application/json")


def test_api_crash_answers_json_500_not_html(setup, monkeypatch):
    client, project, _, _ = setup

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("labeling.api.images.browse_images", boom)
    client.raise_request_exception = False
    response = client.get(f"/api/projects/{project.pk}/images/")
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert "boom" not in response.content.decode()


# --- HTML forms ------------------------------------------------------------------------------


def test_gallery_bulk_action_with_huge_image_id_shows_a_clear_message(client, project, users):
    image = ImageFactory(project=project)
    tag = TagFactory(project=project, name="cat")
    client.force_login(users["admin"])
    response = client.post(
        f"/projects/{project.pk}/images/bulk/",
        {"action": "tag", "image_ids": [image.pk, HUGE], "tag": tag.pk},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code in {400, 422}
    assert "whole numbers" in response.content.decode()
    assert not ImageTag.objects.exists()


def test_gallery_bulk_action_with_huge_tag_is_refused(client, project, users):
    image = ImageFactory(project=project)
    client.force_login(users["admin"])
    response = client.post(
        f"/projects/{project.pk}/images/bulk/",
        {"action": "tag", "image_ids": [image.pk], "tag": HUGE},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code in {400, 422}
    assert not ImageTag.objects.exists()


def test_gallery_with_huge_ids_in_the_query_shows_the_gallery(client, project, users):
    client.force_login(users["admin"])
    response = client.get(f"/projects/{project.pk}/?tag={HUGE}&after={HUGE}")
    assert response.status_code == 200


def test_upload_page_with_huge_tag_is_refused_with_a_form_error(
    client, project, users, image_bytes
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(users["admin"])
    response = client.post(
        f"/projects/{project.pk}/upload/",
        {"files": [SimpleUploadedFile("a.png", image_bytes(), "image/png")], "tag_ids": HUGE},
    )
    assert response.status_code == 422
    assert not project.images.exists()


# --- The helper itself -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", 1, " 42 ", MAX_ID, str(MAX_ID)])
def test_parse_id_accepts_ids(value):
    assert parse_id(value, field="x") == int(str(value).strip())


@pytest.mark.parametrize(
    "value", [0, -1, MAX_ID + 1, "1" * 400, "1.0", 1.0, True, None, "", "١٢", "0x10", [1], {}]
)
def test_parse_id_refuses_everything_else_naming_the_field(value):
    with pytest.raises(InvalidId) as caught:
        parse_id(value, field="image_ids")
    assert "image_ids" in caught.value.message
    assert caught.value.http_status == 400


def test_parse_ids_takes_lists_and_comma_separated_strings():
    assert parse_ids("3,1,,2", field="ids") == [3, 1, 2]
    assert parse_ids(["3", 4], field="ids") == [3, 4]
    with pytest.raises(InvalidId):
        parse_ids([1, 2, 3], field="ids", max_count=2)


def test_tagging_view_drops_a_huge_id_from_the_review_queue(client, project, users):
    image = ImageFactory(project=project)
    client.force_login(users["admin"])
    response = client.get(f"/projects/{project.pk}/images/{image.pk}/?review={image.pk},{HUGE}")
    assert response.status_code == 200


def test_tag_undo_with_a_huge_tag_id_is_refused_not_a_500(client, project, users):
    image = ImageFactory(project=project)
    client.force_login(users["admin"])
    response = client.post(
        f"/projects/{project.pk}/images/{image.pk}/tags/undo/",
        {"tags": str(HUGE), "version": image.version + 1},
    )
    assert response.status_code < 500
    assert not ImageTag.objects.exists()


def test_api_answers_json_400_for_a_request_django_refuses(setup, settings, image_bytes):
    """A SuspiciousOperation (here: too many files) is answered by handler400, in JSON."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    client, project, _, _ = setup
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    client.raise_request_exception = False
    response = client.post(
        f"/api/projects/{project.pk}/images/upload/",
        {"files": [SimpleUploadedFile(f"{i}.png", image_bytes()) for i in range(3)]},
        format="multipart",
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] in {"bad_request", "parse_error", "invalid"}
