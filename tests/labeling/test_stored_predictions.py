"""Stored predictions are reviewer-and-up (issue 16, item 6): through HTTP, for each route kind.

tests/labeling/test_roles.py has the matrix (every route that names one image, on a stored
prediction); these are the routes it cannot show by status alone: the box editor of a detection
project, bulk actions (200 either way: what matters is what changed) and listings.
"""

from __future__ import annotations

import json

import pytest

from labeling.models import Image, ImageTag, Project, Region, Role
from labeling.services.tagging import set_image_tags
from project.errors import Forbidden
from tests.factories import ImageFactory, ImageTagFactory, MembershipFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def cat(project):
    return TagFactory(project=project, name="cat")


@pytest.fixture
def stored(project, cat):
    image = ImageFactory(project=project, source=Image.Source.PREDICTION, is_training=False)
    ImageTagFactory(image=image, tag=cat)
    return image


@pytest.fixture
def training(project):
    return ImageFactory(project=project)


def _tags(image: Image) -> set[int]:
    return set(ImageTag.objects.filter(image=image).values_list("tag_id", flat=True))


def test_box_editor_refuses_a_stored_prediction_to_an_annotator(client_for, users, project, cat):
    project.kind = Project.Kind.DETECTION
    project.save()
    image = ImageFactory(project=project, source=Image.Source.PREDICTION, is_training=False)
    url = f"/projects/{project.pk}/images/{image.pk}/boxes/"
    body = json.dumps(
        {
            "version": 1,
            "regions": [{"tag_id": cat.pk, "left": 0.1, "top": 0.1, "width": 0.5, "height": 0.5}],
        }
    )
    annotator = client_for(users["annotator"])
    assert annotator.get(url).status_code == 403
    response = annotator.post(
        url, body, content_type="application/json", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 403
    assert not Region.objects.filter(image=image).exists()
    reviewer = client_for(users["reviewer"])
    assert reviewer.get(url).status_code == 200
    response = reviewer.post(
        url, body, content_type="application/json", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    assert Region.objects.filter(image=image).count() == 1


@pytest.mark.parametrize("action", ["tag", "untag"])
def test_bulk_api_skips_stored_predictions_for_an_annotator(
    api_client, users, project, cat, stored, training, action
):
    dog = TagFactory(project=project, name="dog")
    api_client.force_login(users["annotator"])
    body = {"action": action, "image_ids": [stored.pk, training.pk], "tag_ids": [dog.pk]}
    if action == "untag":
        body["tag_ids"] = [cat.pk]
    response = api_client.post(f"/api/projects/{project.pk}/images/bulk/", body, format="json")
    assert response.status_code == 200
    assert response.json()["count"] == 1  # the training image only
    assert _tags(stored) == {cat.pk}
    api_client.force_login(users["reviewer"])
    response = api_client.post(f"/api/projects/{project.pk}/images/bulk/", body, format="json")
    assert response.json()["count"] == 2


def test_gallery_bulk_form_skips_stored_predictions_for_an_annotator(
    client_for, users, project, cat, stored
):
    dog = TagFactory(project=project, name="dog")
    client = client_for(users["annotator"])
    response = client.post(
        f"/projects/{project.pk}/images/bulk/",
        {"action": "tag", "image_ids": [stored.pk], "tag": dog.pk},
    )
    assert response.status_code == 302
    assert _tags(stored) == {cat.pk}


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_listings_leave_stored_predictions_out(
    client_for, api_client, users, project, stored, training, role
):
    api_client.force_login(users[role])
    listed = api_client.get(f"/api/projects/{project.pk}/images/").json()
    assert [row["id"] for row in listed["results"]] == [training.pk]
    page = client_for(users[role]).get(f"/projects/{project.pk}/").content.decode()
    assert f"/images/{training.pk}/" in page
    assert f"/images/{stored.pk}/" not in page
    assert stored.file.name not in page


def test_review_queue_does_not_link_an_annotator_to_stored_predictions(
    client_for, users, project, stored, training
):
    other = ImageFactory(project=project)
    queue = f"{other.pk},{stored.pk},{training.pk}"
    page = client_for(users["annotator"]).get(
        f"/projects/{project.pk}/images/{other.pk}/?review={queue}"
    )
    assert page.status_code == 200
    assert f"/images/{stored.pk}/" not in page.content.decode()


def test_tagging_service_refuses_an_annotator(users, project, cat, stored):
    stored.project = project
    with pytest.raises(Forbidden) as raised:
        set_image_tags(image=stored, tags=[], by=users["annotator"], version=None)
    assert raised.value.code == "forbidden"
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER).user
    set_image_tags(image=stored, tags=[], by=reviewer, version=None)
    assert _tags(stored) == set()
