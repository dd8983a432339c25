"""Detection projects in the gallery and the box editor: no bulk tag buttons that always refuse,
thumbnails that open the box editor, a way back that keeps the filter, and live counts."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from labeling.models import Project
from tests.factories import (
    ImageFactory,
    MembershipFactory,
    ProjectFactory,
    RegionFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(client_for):
    project = ProjectFactory(name="Street", kind=Project.Kind.DETECTION)
    user = MembershipFactory(project=project, role="annotator").user
    cat = TagFactory(project=project, name="cat")
    oldest, boxed, newest = (ImageFactory(project=project) for _ in range(3))
    RegionFactory(image=boxed, tag=cat, left=0.1, top=0.1, width=0.2, height=0.2)
    boxed.is_tagged = True
    boxed.save(update_fields=["is_tagged"])
    return {
        "project": project,
        "client": client_for(user),
        "cat": cat,
        "images": (oldest, boxed, newest),
    }


def test_detection_gallery_has_no_bulk_tag_buttons_and_thumbnails_open_the_box_editor(detection):
    project, (oldest, _, _) = detection["project"], detection["images"]
    url = reverse("labeling:project-detail", args=[project.pk])
    html = detection["client"].get(url, {"filter": "untagged"}).content.decode()
    assert 'data-testid="bulk-tag-button"' not in html
    assert 'data-testid="bulk-untag-button"' not in html
    assert 'data-testid="bulk-tag"' not in html
    boxes = reverse("labeling:image-boxes", args=[project.pk, oldest.pk])
    assert f'href="{boxes}?filter=untagged"' in html
    tagging = reverse("labeling:image-tag", args=[project.pk, oldest.pk])
    assert f'href="{tagging}?' not in html


def test_classification_gallery_keeps_its_bulk_tag_buttons(client_for, project, users):
    TagFactory(project=project, name="cat")
    ImageFactory(project=project)
    html = client_for(users["annotator"]).get(reverse("labeling:project-detail", args=[project.pk]))
    assert 'data-testid="bulk-tag-button"' in html.content.decode()


def test_box_editor_links_back_to_the_gallery_with_its_filter_and_walks_that_filter(detection):
    project, (oldest, _, newest) = detection["project"], detection["images"]
    url = reverse("labeling:image-boxes", args=[project.pk, newest.pk])
    data = (
        detection["client"].get(url, {"filter": "untagged"}, HTTP_ACCEPT="application/json").json()
    )
    gallery = reverse("labeling:project-detail", args=[project.pk])
    assert data["galleryUrl"] == f"{gallery}?filter=untagged"
    # Next skips the boxed image: the untagged filter does not show it.
    assert data["nextUrl"] == (
        reverse("labeling:image-boxes", args=[project.pk, oldest.pk]) + "?filter=untagged"
    )
    assert (data["taggedCount"], data["untaggedLeft"]) == (1, 2)
    page = detection["client"].get(url, {"filter": "untagged"}).content.decode()
    assert f'href="{gallery}?filter=untagged" data-testid="back-to-gallery"' in page
    assert "1 with boxes · 2 without" in page


def test_box_editor_save_answers_the_projects_new_counts(detection):
    project, cat, (_, _, newest) = detection["project"], detection["cat"], detection["images"]
    url = reverse("labeling:image-boxes", args=[project.pk, newest.pk])
    box = {"tag_id": cat.pk, "left": 0.2, "top": 0.2, "width": 0.3, "height": 0.3}
    response = detection["client"].post(
        url,
        json.dumps({"version": newest.version, "regions": [box]}),
        content_type="application/json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["taggedCount"], body["untaggedLeft"]) == (2, 1)
    newest.refresh_from_db()
    assert newest.is_tagged and newest.regions.count() == 1
