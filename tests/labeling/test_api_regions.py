"""The REST API of boxes: list, batch create (per-item report), update, delete, with the box
editor's rules and ids that stay put."""

from __future__ import annotations

import pytest

from labeling.models import Image, ImageTag, Project, Region, Tag
from labeling.services.regions import ensure_negative_tag
from tests.factories import ImageFactory, ImageTagFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(project):
    project.kind = Project.Kind.DETECTION
    project.save(update_fields=["kind"])
    return project


def box(tag, image=None, **coords) -> dict:
    values = {"tag_id": tag.pk, "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4, **coords}
    if image is not None:
        values["image_id"] = image.pk
    return values


def batch(client, project, *boxes):
    return client.post(f"/api/projects/{project.pk}/regions/", {"regions": list(boxes)}, "json")


def test_a_batch_lands_its_good_boxes_and_reports_each_refused_one(api_client, detection, users):
    cat = TagFactory(project=detection, name="cat")
    negative = ensure_negative_tag(detection)
    image = ImageFactory(project=detection, width=100, height=50)
    other = ImageFactory(project=ProjectFactory(kind=Project.Kind.DETECTION))
    api_client.force_authenticate(users["annotator"])
    answer = batch(
        api_client,
        detection,
        box(cat, image),
        box(cat, image, left=0.9, width=0.3),  # reaches outside the image
        box(negative, image),  # boxes take regular tags
        box(cat, other),  # another project's image
        {"image_id": image.pk, "tag_id": cat.pk, "left": "a"},  # not a box
        box(cat, image, left=0.5, top=0.5, width=0.5, height=0.5),
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert [(r["left"], r["top"]) for r in body["created"]] == [(0.1, 0.2), (0.5, 0.5)]
    assert body["created"][0]["image_id"] == image.pk and body["created"][0]["tag_name"] == "cat"
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "invalid"),
        (2, "label_rule"),
        (3, "not_found"),
        (4, "invalid"),
    ]
    assert "outside the image" in body["rejected"][0]["message"]
    assert Region.objects.filter(image=image).count() == 2
    image.refresh_from_db()
    assert image.is_tagged and image.version == 3  # one version per box written


def test_adding_a_box_keeps_the_others_and_their_ids_and_clears_no_objects(
    api_client, detection, users
):
    cat = TagFactory(project=detection, name="cat")
    image = ImageFactory(project=detection)
    ImageTagFactory(image=image, tag=ensure_negative_tag(detection))  # marked "No objects"
    api_client.force_authenticate(users["annotator"])
    first = batch(api_client, detection, box(cat, image), box(cat, image, left=0.5)).json()
    ids = [r["id"] for r in first["created"]]
    assert not ImageTag.objects.filter(image=image, tag__kind=Tag.Kind.NEGATIVE).exists()
    batch(api_client, detection, box(cat, image, top=0.5))
    listed = api_client.get(f"/api/projects/{detection.pk}/images/{image.pk}/regions/").json()
    assert [r["id"] for r in listed][:2] == ids and len(listed) == 3


def test_update_and_delete_one_box(api_client, detection, users):
    cat, dog = TagFactory(project=detection, name="cat"), TagFactory(project=detection, name="dog")
    image = ImageFactory(project=detection, width=100, height=100)
    api_client.force_authenticate(users["annotator"])
    created = batch(api_client, detection, box(cat, image), box(cat, image, left=0.6)).json()
    first, second = (r["id"] for r in created["created"])
    url = f"/api/projects/{detection.pk}/regions/{first}/"
    version = Image.objects.get(pk=image.pk).version
    moved = api_client.put(url, {**box(dog, left=0.2, width=0.5), "version": version}, "json")
    assert moved.status_code == 200, moved.content
    region = Region.objects.get(pk=first)
    assert (region.tag_id, region.left, region.width) == (dog.pk, 0.2, 0.5)
    stale = api_client.put(url, {**box(cat), "version": version}, "json")
    assert stale.status_code == 409 and stale.json()["code"] == "edit_conflict"
    outside = api_client.put(url, box(cat, left=0.8, width=0.5), "json")
    assert outside.status_code == 422
    assert api_client.delete(url).status_code == 204
    assert list(Region.objects.filter(image=image).values_list("pk", flat=True)) == [second]
    assert Image.objects.get(pk=image.pk).is_tagged
    api_client.delete(f"/api/projects/{detection.pk}/regions/{second}/")
    assert not Image.objects.get(pk=image.pk).is_tagged  # no box and no mark: unlabeled
    assert api_client.get(url).status_code == 404


def test_boxes_of_a_stored_prediction_are_for_reviewers(api_client, detection, users):
    cat = TagFactory(project=detection, name="cat")
    stored = ImageFactory(project=detection, source=Image.Source.PREDICTION, is_training=False)
    api_client.force_authenticate(users["annotator"])
    refused = batch(api_client, detection, box(cat, stored))
    assert refused.status_code == 200
    assert [r["code"] for r in refused.json()["rejected"]] == ["forbidden"]
    listed = api_client.get(f"/api/projects/{detection.pk}/images/{stored.pk}/regions/")
    assert listed.status_code == 403
    api_client.force_authenticate(users["reviewer"])
    created = batch(api_client, detection, box(cat, stored))
    assert created.status_code == 201
    region_id = created.json()["created"][0]["id"]
    api_client.force_authenticate(users["annotator"])
    url = f"/api/projects/{detection.pk}/regions/{region_id}/"
    assert api_client.delete(url).status_code == 403
    assert Region.objects.filter(pk=region_id).exists()


def test_classification_projects_have_no_boxes_and_bad_batches_are_400(api_client, project, users):
    cat = TagFactory(project=project, name="cat")
    image = ImageFactory(project=project)
    api_client.force_authenticate(users["admin"])
    refused = batch(api_client, project, box(cat, image))
    assert refused.status_code == 422 and refused.json()["code"] == "label_rule"
    project.kind = Project.Kind.DETECTION
    project.save(update_fields=["kind"])
    assert batch(api_client, project).status_code == 400  # empty batch
    too_many = batch(api_client, project, *[box(cat, image)] * 501)
    assert too_many.status_code == 400
    assert not Region.objects.exists()


def test_listing_an_images_boxes_costs_the_same_queries_for_more_boxes(
    api_client, detection, users
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cat = TagFactory(project=detection, name="cat")
    image = ImageFactory(project=detection)
    api_client.force_authenticate(users["annotator"])
    url = f"/api/projects/{detection.pk}/images/{image.pk}/regions/"
    batch(api_client, detection, box(cat, image))
    with CaptureQueriesContext(connection) as one:
        assert len(api_client.get(url).json()) == 1
    batch(api_client, detection, *[box(cat, image, left=0.05 * n) for n in range(1, 9)])
    with CaptureQueriesContext(connection) as nine:
        assert len(api_client.get(url).json()) == 9
    assert len(nine) == len(one)
