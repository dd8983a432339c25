"""REST API: listing, uploading, tagging and deleting images, through HTTP with database checks."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Image, ImageTag, Project, Tag
from tests.conftest import make_image
from tests.factories import ImageFactory, ImageTagFactory, ProjectFactory, RegionFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_user(api_client):
    def login(user):
        api_client.force_authenticate(user=user)
        return api_client

    return login


@pytest.fixture
def tags(project):
    return {name: TagFactory(project=project, name=name) for name in ("cat", "dog")}


def url(project: Project, suffix: str = "") -> str:
    return f"/api/projects/{project.id}/images/{suffix}"


# --- Listing ---------------------------------------------------------------------------------


def test_image_list_item_has_tags_regions_urls_and_version(as_user, project, users, tags):
    image = ImageFactory(
        project=project, width=300, height=200, original_name="a.png", is_tagged=True
    )
    ImageTagFactory(image=image, tag=tags["cat"])
    response = as_user(users["annotator"]).get(url(project))
    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["next_cursor"]) == (1, None, None)
    item = body["results"][0]
    assert item["id"] == image.id
    assert (item["width"], item["height"], item["original_name"]) == (300, 200, "a.png")
    assert item["tags"] == [{"id": tags["cat"].id, "name": "cat"}]
    assert item["regions"] == []
    assert item["urls"]["file"].startswith("http://testserver/media/images/")
    assert item["urls"]["thumbnail"] is None
    assert item["is_small"] is True
    assert item["version"] == 1
    assert "created" in item


def test_image_list_shows_regions_of_detection_images(as_user, users):
    project = ProjectFactory(kind=Project.Kind.DETECTION)
    project.memberships.create(user=users["annotator"], role="annotator")
    region = RegionFactory(
        image=ImageFactory(project=project),
        tag=TagFactory(project=project),
        left=0.25,
        top=0.5,
        width=0.5,
        height=0.25,
    )
    item = as_user(users["annotator"]).get(url(project)).json()["results"][0]
    assert item["regions"] == [
        {
            "id": region.id,
            "tag_id": region.tag_id,
            "left": 0.25,
            "top": 0.5,
            "width": 0.5,
            "height": 0.25,
        }
    ]


def test_image_list_filters_tagged_untagged_and_by_tag(as_user, project, users, tags):
    cat_image = ImageFactory(project=project, is_tagged=True)
    ImageTagFactory(image=cat_image, tag=tags["cat"])
    dog_image = ImageFactory(project=project, is_tagged=True)
    ImageTagFactory(image=dog_image, tag=tags["dog"])
    untagged = ImageFactory(project=project)
    ImageFactory(project=project, is_training=False)  # a stored prediction: never listed
    client = as_user(users["annotator"])

    def ids(query: str) -> list[int]:
        return [item["id"] for item in client.get(url(project) + query).json()["results"]]

    assert ids("") == [untagged.id, dog_image.id, cat_image.id]
    assert ids("?tagged=true") == [dog_image.id, cat_image.id]
    assert ids("?tagged=false") == [untagged.id]
    assert ids(f"?tag={tags['cat'].id}") == [cat_image.id]


def test_image_list_with_another_projects_tag_is_404(as_user, project, users):
    response = as_user(users["annotator"]).get(url(project) + f"?tag={TagFactory().id}")
    assert response.status_code == 404


def test_image_list_with_malformed_filter_is_400(as_user, project, users):
    response = as_user(users["annotator"]).get(url(project) + "?tagged=maybe&page_size=0")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"tagged", "page_size"}


def test_image_list_pages_follow_the_cursor_to_the_end(as_user, project, users):
    images = [ImageFactory(project=project) for _ in range(5)]
    client = as_user(users["annotator"])
    first = client.get(url(project) + "?page_size=2").json()
    assert [i["id"] for i in first["results"]] == [images[4].id, images[3].id]
    assert first["count"] == 5
    second = client.get(first["next"]).json()
    assert [i["id"] for i in second["results"]] == [images[2].id, images[1].id]
    third = client.get(second["next"]).json()
    assert [i["id"] for i in third["results"]] == [images[0].id]
    assert third["next"] is None and third["next_cursor"] is None


def test_image_list_query_count_does_not_grow_with_page_size_or_depth(
    as_user, project, users, tags, django_assert_num_queries
):
    for n in range(12):
        image = ImageFactory(project=project, is_tagged=True)
        ImageTagFactory(image=image, tag=tags["cat"])
        if n % 2:
            ImageTagFactory(image=image, tag=tags["dog"])
    client = as_user(users["annotator"])
    # project, role, page, newer-exists, tags prefetch, regions prefetch, count: 7 queries for
    # 2 items or 10, on the first page or a later one; a tag filter adds its tag lookup.
    with django_assert_num_queries(7):
        small = client.get(url(project) + "?page_size=2")
    with django_assert_num_queries(7):
        big = client.get(url(project) + "?page_size=10")
    with django_assert_num_queries(7):
        deep = client.get(url(project) + f"?page_size=10&after={big.json()['next_cursor']}")
    with django_assert_num_queries(8):
        by_tag = client.get(url(project) + f"?page_size=10&tag={tags['dog'].id}")
    assert len(small.json()["results"]) == 2
    assert len(big.json()["results"]) == 10
    assert len(deep.json()["results"]) == 2
    assert len(by_tag.json()["results"]) == 6
    assert sum(len(item["tags"]) for item in big.json()["results"]) == 15


# --- Upload ----------------------------------------------------------------------------------


def png(name: str, color: tuple[int, int, int], size: int = 300) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, make_image(size, size, color), content_type="image/png")


def test_upload_many_files_reports_each_and_stores_the_good_ones(as_user, project, users, tags):
    files = [
        png("red.png", (255, 0, 0)),
        png("green.png", (0, 255, 0)),
        SimpleUploadedFile("notes.png", b"this is text, not an image"),
    ]
    response = as_user(users["annotator"]).post(
        url(project), {"files": files, "tag_ids": [tags["cat"].id]}, format="multipart"
    )
    assert response.status_code == 201
    body = response.json()
    assert [item["filename"] for item in body["accepted"]] == ["red.png", "green.png"]
    assert [(item["filename"], item["code"]) for item in body["rejected"]] == [
        ("notes.png", "not_an_image")
    ]
    assert body["rejected"][0]["message"].endswith(".")
    stored = Image.objects.filter(project=project)
    assert sorted(stored.values_list("original_name", flat=True)) == ["green.png", "red.png"]
    assert ImageTag.objects.filter(image__in=stored, tag=tags["cat"]).count() == 2


def test_upload_of_only_bad_files_is_200_and_stores_nothing(as_user, project, users):
    response = as_user(users["annotator"]).post(
        url(project), {"files": [SimpleUploadedFile("empty.jpg", b"")]}, format="multipart"
    )
    assert response.status_code == 200
    assert response.json()["accepted"] == []
    assert len(response.json()["rejected"]) == 1
    assert not Image.objects.exists()


def test_upload_without_files_is_400(as_user, project, users):
    response = as_user(users["annotator"]).post(url(project), {}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "no_files"


def test_uploaded_duplicate_is_reported_not_stored_twice(as_user, project, users):
    client = as_user(users["annotator"])
    client.post(url(project), {"files": [png("a.png", (1, 2, 3))]}, format="multipart")
    again = client.post(url(project), {"files": [png("b.png", (1, 2, 3))]}, format="multipart")
    assert again.status_code == 200
    assert again.json()["rejected"][0]["code"] == "duplicate"
    assert Image.objects.filter(project=project).count() == 1


# --- One image -------------------------------------------------------------------------------


def test_get_one_image(as_user, project, users):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).get(url(project, f"{image.id}/"))
    assert response.status_code == 200
    assert response.json()["id"] == image.id


def test_image_of_another_project_is_404(as_user, project, users):
    other = ImageFactory()
    response = as_user(users["admin"]).get(url(project, f"{other.id}/"))
    assert response.status_code == 404
    assert response.json()["message"] == "This image does not exist in this project."


def test_reviewer_deletes_image_with_its_file(as_user, project, users):
    image = ImageFactory(project=project)
    path = image.file.path
    response = as_user(users["reviewer"]).delete(url(project, f"{image.id}/"))
    assert response.status_code == 204
    assert not Image.objects.filter(pk=image.pk).exists()
    assert not os.path.exists(path)


def test_annotator_cannot_delete_image(as_user, project, users):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).delete(url(project, f"{image.id}/"))
    assert response.status_code == 403
    assert Image.objects.filter(pk=image.pk).exists()


# --- An image's tags -------------------------------------------------------------------------


def test_put_replaces_tags_and_bumps_version(as_user, project, users, tags):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).put(
        url(project, f"{image.id}/tags/"),
        {"tag_ids": [tags["dog"].id], "version": 1},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["tags"] == [{"id": tags["dog"].id, "name": "dog"}]
    assert response.json()["version"] == 2
    image.refresh_from_db()
    assert (image.version, image.is_tagged) == (2, True)
    assert list(image.image_tags.values_list("tag_id", flat=True)) == [tags["dog"].id]


def test_put_with_stale_version_is_409_and_changes_nothing(as_user, project, users, tags):
    image = ImageFactory(project=project, version=3)
    ImageTagFactory(image=image, tag=tags["cat"])
    response = as_user(users["annotator"]).put(
        url(project, f"{image.id}/tags/"),
        {"tag_ids": [tags["dog"].id], "version": 2},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "edit_conflict"
    assert list(image.image_tags.values_list("tag_id", flat=True)) == [tags["cat"].id]
    image.refresh_from_db()
    assert image.version == 3


def test_put_two_tags_in_multiclass_is_422(as_user, project, users, tags):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).put(
        url(project, f"{image.id}/tags/"),
        {"tag_ids": [tags["cat"].id, tags["dog"].id], "version": 1},
        format="json",
    )
    assert response.status_code == 422
    assert response.json()["code"] == "label_rule"
    assert not image.image_tags.exists()


def test_put_with_another_projects_tag_is_404(as_user, project, users):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).put(
        url(project, f"{image.id}/tags/"),
        {"tag_ids": [TagFactory().id], "version": None},
        format="json",
    )
    assert response.status_code == 404
    assert not image.image_tags.exists()


def test_post_adds_a_tag_and_delete_removes_it_in_multilabel(as_user, users):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL)
    project.memberships.create(user=users["annotator"], role="annotator")
    cat, dog = TagFactory(project=project), TagFactory(project=project)
    image = ImageFactory(project=project)
    client = as_user(users["annotator"])
    client.post(url(project, f"{image.id}/tags/"), {"tag_id": cat.id}, format="json")
    response = client.post(url(project, f"{image.id}/tags/"), {"tag_id": dog.id}, format="json")
    assert response.status_code == 200
    assert sorted(t["id"] for t in response.json()["tags"]) == [cat.id, dog.id]
    removed = client.delete(url(project, f"{image.id}/tags/"), {"tag_id": cat.id}, format="json")
    assert removed.status_code == 200
    assert [t["id"] for t in removed.json()["tags"]] == [dog.id]
    by_query = client.delete(url(project, f"{image.id}/tags/") + f"?tag_id={dog.id}")
    assert by_query.json()["tags"] == []
    image.refresh_from_db()
    assert image.is_tagged is False
    assert not image.image_tags.exists()


def test_post_in_multiclass_replaces_the_tag(as_user, project, users, tags):
    image = ImageFactory(project=project, is_tagged=True)
    ImageTagFactory(image=image, tag=tags["cat"])
    response = as_user(users["annotator"]).post(
        url(project, f"{image.id}/tags/"), {"tag_id": tags["dog"].id}, format="json"
    )
    assert response.status_code == 200
    assert list(image.image_tags.values_list("tag_id", flat=True)) == [tags["dog"].id]


def test_delete_tag_without_tag_id_is_400(as_user, project, users):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).delete(url(project, f"{image.id}/tags/"))
    assert response.status_code == 400


# --- Bulk ------------------------------------------------------------------------------------


def test_bulk_tag_untag_and_delete(as_user, project, users, tags):
    images = [ImageFactory(project=project) for _ in range(3)]
    other_project_image = ImageFactory()
    ids = [i.id for i in images] + [other_project_image.id]
    client = as_user(users["reviewer"])

    tagged = client.post(
        url(project, "bulk/"),
        {"action": "tag", "image_ids": ids, "tag_ids": [tags["cat"].id]},
        format="json",
    )
    assert tagged.json() == {"action": "tag", "count": 3}
    assert ImageTag.objects.filter(tag=tags["cat"]).count() == 3
    assert not other_project_image.image_tags.exists()
    assert Image.objects.filter(project=project, is_tagged=True).count() == 3

    untagged = client.post(
        url(project, "bulk/"), {"action": "untag", "image_ids": ids[:2]}, format="json"
    )
    assert untagged.json() == {"action": "untag", "count": 2}
    assert Image.objects.filter(project=project, is_tagged=True).count() == 1

    deleted = client.post(
        url(project, "bulk/"), {"action": "delete", "image_ids": ids}, format="json"
    )
    assert deleted.json() == {"action": "delete", "count": 3}
    assert not Image.objects.filter(project=project).exists()
    assert Image.objects.filter(pk=other_project_image.pk).exists()


def test_bulk_tag_without_tags_is_400(as_user, project, users):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).post(
        url(project, "bulk/"), {"action": "tag", "image_ids": [image.id]}, format="json"
    )
    assert response.status_code == 400
    assert "tag_ids" in response.json()["errors"]


def test_bulk_delete_needs_reviewer(as_user, project, users):
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).post(
        url(project, "bulk/"), {"action": "delete", "image_ids": [image.id]}, format="json"
    )
    assert response.status_code == 403
    assert Image.objects.filter(pk=image.pk).exists()


def test_bulk_tag_with_negative_and_regular_is_422(as_user, users):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL)
    project.memberships.create(user=users["annotator"], role="annotator")
    regular = TagFactory(project=project)
    negative = TagFactory(project=project, kind=Tag.Kind.NEGATIVE)
    image = ImageFactory(project=project)
    response = as_user(users["annotator"]).post(
        url(project, "bulk/"),
        {"action": "tag", "image_ids": [image.id], "tag_ids": [regular.id, negative.id]},
        format="json",
    )
    assert response.status_code == 422
    assert not image.image_tags.exists()
