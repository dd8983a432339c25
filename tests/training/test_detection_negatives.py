"""Detection negatives: the box editor's "No objects" mark and how training sees it."""

from __future__ import annotations

import json

import pytest

from labeling.models import Image, ImageTag, Project, Tag
from labeling.services.projects import create_tag
from labeling.services.regions import set_image_regions
from tests.factories import ImageFactory, RegionFactory, TagFactory
from training.services.checks import take_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(project):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    return project


@pytest.fixture
def image(detection):
    return ImageFactory(project=detection, width=200, height=100)


@pytest.fixture
def cat(detection):
    return TagFactory(project=detection, name="cat")


def url(image):
    return f"/projects/{image.project_id}/images/{image.pk}/boxes/"


def save(client, image, *, version, regions=(), **extra):
    return client.post(
        url(image),
        json.dumps({"version": version, "regions": list(regions), **extra}),
        content_type="application/json",
        HTTP_ACCEPT="application/json",
    )


def box(tag):
    return {"tag_id": tag.pk, "left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4}


def marks(image):
    return ImageTag.objects.filter(image=image, tag__kind=Tag.Kind.NEGATIVE).count()


def test_an_annotator_marks_an_image_no_objects_and_the_negative_tag_appears(
    client_for, users, image, detection
):
    assert not detection.tags.exists()

    response = save(client_for(users["annotator"]), image, version=1, no_objects=True)

    assert response.status_code == 200
    assert response.json() == {
        "version": 2,
        "is_tagged": True,
        "regions": [],
        "no_objects": True,
        "taggedCount": 1,  # the box editor's live counts
        "untaggedLeft": 0,
    }
    negative = Tag.objects.get(project=detection)
    assert (negative.name, negative.kind) == ("Negative", Tag.Kind.NEGATIVE)
    assert marks(image) == 1
    image.refresh_from_db()
    assert image.is_tagged and image.version == 2
    editor = client_for(users["annotator"]).get(url(image), HTTP_ACCEPT="application/json")
    assert editor.json()["noObjects"] is True
    assert editor.json()["tags"] == []  # the Negative tag is not a tag for boxes


def test_drawing_a_box_clears_the_mark(client_for, users, image, cat):
    client = client_for(users["annotator"])
    save(client, image, version=1, no_objects=True)

    response = save(client, image, version=2, regions=[box(cat)])

    assert response.status_code == 200
    assert response.json()["no_objects"] is False and response.json()["is_tagged"] is True
    assert marks(image) == 0


def test_an_image_with_boxes_cannot_be_marked_no_objects(client_for, users, image, cat):
    client = client_for(users["annotator"])
    save(client, image, version=1, regions=[box(cat)])

    response = save(client, image, version=2, regions=[box(cat)], no_objects=True)

    assert response.status_code == 422
    assert response.json()["message"] == (
        "An image with boxes has objects: delete its boxes before marking it “No objects”."
    )
    assert marks(image) == 0
    assert Image.objects.get(pk=image.pk).version == 2  # nothing was written


def test_clearing_the_mark_leaves_the_image_untouched_and_a_save_without_it_keeps_it(
    client_for, users, image
):
    client = client_for(users["annotator"])
    save(client, image, version=1, no_objects=True)

    kept = save(client, image, version=2)  # the import and API callers send no mark at all
    assert kept.json()["no_objects"] is True and marks(image) == 1

    cleared = save(client, image, version=3, no_objects=False)
    assert cleared.json() == {
        "version": 4,
        "is_tagged": False,
        "regions": [],
        "no_objects": False,
        "taggedCount": 0,
        "untaggedLeft": 1,
    }
    assert marks(image) == 0
    assert not Image.objects.get(pk=image.pk).is_tagged


def test_marking_is_versioned_like_boxes(client_for, users, image):
    client = client_for(users["annotator"])
    save(client, image, version=1, no_objects=True)

    stale = save(client, image, version=1, no_objects=False)

    assert stale.status_code == 409
    assert marks(image) == 1


def test_a_mark_that_is_not_a_boolean_is_refused(client_for, users, image):
    response = save(client_for(users["annotator"]), image, version=1, no_objects="yes")
    assert response.status_code == 422
    assert response.json()["message"] == '"no_objects" must be true or false.'


@pytest.mark.parametrize(("role", "status"), [("non_member", 404), ("reviewer", 200)])
def test_marking_needs_project_access(client_for, users, image, role, status):
    response = save(client_for(users[role]), image, version=1, no_objects=True)
    assert response.status_code == status
    assert marks(image) == (1 if status == 200 else 0)


def test_admins_may_create_the_negative_tag_of_a_detection_project(users, detection, image):
    tag = create_tag(
        project=detection, name="Nothing here", kind=Tag.Kind.NEGATIVE, by=users["admin"]
    )
    set_image_regions(image=image, regions=[], by=users["annotator"], version=1, no_objects=True)

    assert ImageTag.objects.get(image=image).tag == tag  # the existing one, not a second


def test_a_regular_tag_called_negative_does_not_block_the_mark(client_for, users, image):
    TagFactory(project=image.project, name="negative")  # a regular tag of that name

    assert (
        save(client_for(users["annotator"]), image, version=1, no_objects=True).status_code == 200
    )
    assert Tag.objects.get(project=image.project, kind=Tag.Kind.NEGATIVE).name == "No objects"


def test_training_takes_boxed_and_marked_images_but_not_untouched_ones(
    client_for, users, detection, cat
):
    boxed = ImageFactory(project=detection, is_tagged=True)
    RegionFactory(image=boxed, tag=cat)
    marked = ImageFactory(project=detection)
    untouched = ImageFactory(project=detection)
    save(client_for(users["annotator"]), marked, version=1, no_objects=True)

    snapshot = take_snapshot(detection)

    by_id = {image.image_id: image for image in snapshot.images}
    assert set(by_id) == {boxed.pk, marked.pk}
    assert untouched.pk not in by_id
    assert by_id[marked.pk].is_negative and by_id[marked.pk].boxes == ()
    assert not by_id[boxed.pk].is_negative and by_id[boxed.pk].labels == (0,)
    assert [tag.name for tag in snapshot.tags] == ["cat"]
