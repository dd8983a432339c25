"""Boxes of detection images: the editor's save endpoint and the rules of set_image_regions."""

import json

import pytest

from labeling.models import Image, Project, Region, Role, Tag
from labeling.services.regions import set_image_regions
from project.errors import EditConflict, ValidationFailed
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(users, project):
    project.kind = Project.Kind.DETECTION
    project.save()
    return project


@pytest.fixture
def image(detection):
    return ImageFactory(project=detection, width=200, height=100)


@pytest.fixture
def cat(detection):
    return TagFactory(project=detection, name="cat")


def save(client, image, regions, version):
    return client.post(
        f"/projects/{image.project_id}/images/{image.pk}/boxes/",
        json.dumps({"version": version, "regions": regions}),
        content_type="application/json",
        HTTP_ACCEPT="application/json",
    )


def box(tag, left=0.1, top=0.2, width=0.3, height=0.4):
    return {"tag_id": tag.pk, "left": left, "top": top, "width": width, "height": height}


def test_saving_boxes_stores_fractions_and_marks_image_tagged(client_for, users, image, cat):
    response = save(
        client_for(users["annotator"]), image, [box(cat), box(cat, 0.5, 0.5, 0.5, 0.5)], version=1
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2
    rows = list(
        Region.objects.filter(image=image).values_list(
            "tag__name", "left", "top", "width", "height"
        )
    )
    assert rows == [("cat", 0.1, 0.2, 0.3, 0.4), ("cat", 0.5, 0.5, 0.5, 0.5)]
    image.refresh_from_db()
    assert image.is_tagged and image.version == 2


def test_saving_an_empty_list_removes_boxes_and_untags(client_for, users, image, cat):
    client = client_for(users["annotator"])
    save(client, image, [box(cat)], version=1)
    response = save(client, image, [], version=2)
    assert response.status_code == 200
    image.refresh_from_db()
    assert not image.is_tagged and not Region.objects.filter(image=image).exists()


def test_second_editor_with_a_stale_version_gets_409_and_changes_nothing(
    client_for, users, image, cat
):
    first = save(client_for(users["annotator"]), image, [box(cat)], version=1)
    assert first.status_code == 200
    second = save(client_for(users["reviewer"]), image, [box(cat, 0.6)], version=1)
    assert second.status_code == 409
    assert second.json()["code"] == "edit_conflict"
    assert list(Region.objects.filter(image=image).values_list("left", flat=True)) == [0.1]


def test_box_under_one_pixel_is_refused_with_its_number(client_for, users, image, cat):
    # 0.004 of 200 px is 0.8 px.
    response = save(
        client_for(users["annotator"]), image, [box(cat), box(cat, width=0.004)], version=1
    )
    assert response.status_code == 422
    assert "Box 2" in response.json()["message"]
    assert "1 pixel" in response.json()["message"]
    assert not Region.objects.exists()
    image.refresh_from_db()
    assert image.version == 1


def test_box_outside_the_image_is_refused(client_for, users, image, cat):
    response = save(
        client_for(users["annotator"]), image, [box(cat, left=0.8, width=0.3)], version=1
    )
    assert response.status_code == 422
    assert "outside the image" in response.json()["message"]
    assert not Region.objects.exists()


def test_float_overshoot_under_half_a_pixel_is_clipped_to_the_image(users, image, cat):
    # 1.002 * 200 px overshoots by 0.4 px at the right edge; -0.001 * 100 px is -0.1 px.
    set_image_regions(
        image=image, regions=[(cat, 0.5, -0.001, 0.502, 0.5)], by=users["annotator"], version=None
    )
    region = Region.objects.get(image=image)
    assert (region.left, region.top) == (0.5, 0.0)
    assert region.left + region.width == pytest.approx(1.0)
    assert region.height == pytest.approx(0.499)


def test_negative_tag_and_other_projects_tags_are_refused(client_for, users, image, cat):
    client = client_for(users["annotator"])
    other = TagFactory(project=ProjectFactory(kind=Project.Kind.DETECTION))
    assert save(client, image, [box(other)], version=1).status_code == 404
    negative = Tag.objects.create(project=image.project, name="Negative", kind=Tag.Kind.NEGATIVE)
    response = save(client, image, [box(negative)], version=1)
    assert response.status_code == 422
    assert "regular tag" in response.json()["message"]
    assert not Region.objects.exists()


def test_classification_projects_have_no_boxes(users, project):
    image = ImageFactory(project=project)
    tag = TagFactory(project=project)
    with pytest.raises(Exception, match="Only object detection projects"):
        set_image_regions(image=image, regions=[(tag, 0, 0, 1, 1)], by=users["admin"], version=None)


def test_non_member_gets_404_and_malformed_body_422(client_for, users, image, cat):
    assert save(client_for(users["non_member"]), image, [box(cat)], 1).status_code == 404
    client = client_for(users["annotator"])
    response = client.post(
        f"/projects/{image.project_id}/images/{image.pk}/boxes/",
        "nonsense",
        content_type="application/json",
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 422
    response = save(client, image, [{"tag_id": cat.pk, "left": "a"}], version=1)
    assert response.status_code == 422
    assert not Region.objects.exists()


def test_service_raises_edit_conflict_and_validation_errors(users, image, cat):
    with pytest.raises(EditConflict):
        set_image_regions(
            image=image, regions=[(cat, 0, 0, 1, 1)], by=users["annotator"], version=7
        )
    with pytest.raises(ValidationFailed, match="finite"):
        set_image_regions(
            image=image, regions=[(cat, float("nan"), 0, 1, 1)], by=users["annotator"], version=None
        )
    assert Image.objects.get(pk=image.pk).version == 1


def test_editor_page_lists_tags_boxes_and_neighbours(client_for, users, detection, cat):
    older, current, newer = (ImageFactory(project=detection, width=50, height=40) for _ in range(3))
    Region.objects.create(image=current, tag=cat, left=0.1, top=0.1, width=0.2, height=0.2)
    Image.objects.filter(pk=current.pk).update(is_tagged=True)
    response = client_for(users["annotator"]).get(
        f"/projects/{detection.pk}/images/{current.pk}/boxes/"
    )
    assert response.status_code == 200
    data = response.context["editor_data"]
    assert data["tags"] == [{"id": cat.pk, "name": "cat"}]
    assert data["regions"] == [
        {"tag_id": cat.pk, "left": 0.1, "top": 0.1, "width": 0.2, "height": 0.2}
    ]
    assert data["prevUrl"].endswith(f"/images/{newer.pk}/boxes/")
    assert data["nextUrl"].endswith(f"/images/{older.pk}/boxes/")
    assert data["nextUntaggedUrl"].endswith(f"/images/{older.pk}/boxes/")
    assert response["Cache-Control"].startswith("max-age=0")


def test_next_untagged_wraps_around_to_the_newest(client_for, users, detection, cat):
    oldest = ImageFactory(project=detection)
    newest = ImageFactory(project=detection)
    user = MembershipFactory(project=detection, role=Role.ANNOTATOR).user
    response = client_for(user).get(f"/projects/{detection.pk}/images/{oldest.pk}/boxes/")
    assert response.context["editor_data"]["nextUntaggedUrl"].endswith(
        f"/images/{newest.pk}/boxes/"
    )
    assert response.context["editor_data"]["nextUrl"] is None
