"""The tagging view through HTTP: label rules, auto-advance, edit conflicts, navigation, delete."""

from __future__ import annotations

import json
import re

import pytest

from labeling.models import Image, ImageTag, Project
from tests.factories import ImageFactory, ImageTagFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Target": "tagging-stage"}


@pytest.fixture
def tags(project):
    return [TagFactory(project=project, name=name) for name in ("apple", "banana", "cherry")]


@pytest.fixture
def negative(project):
    return TagFactory(project=project, name="none of these", kind="negative")


@pytest.fixture
def images(project):
    """Five images; gallery order (newest first) is images[4], images[3], ... images[0]."""
    return [ImageFactory(project=project) for _ in range(5)]


def tag_names(image) -> set[str]:
    return set(ImageTag.objects.filter(image=image).values_list("tag__name", flat=True))


def version(image) -> int:
    return Image.objects.get(pk=image.pk).version


def toggle(client, image, tag, *, version, advance=False, query=""):
    data = {"tag": tag.id, "version": version}
    if advance:
        data["advance"] = "1"
    return client.post(
        f"/projects/{image.project_id}/images/{image.id}/tags/{query}", data, headers=HTMX
    )


def stage_image_id(response) -> int:
    return int(
        re.search(r'id="tagging-stage"[^>]*data-image-id="(\d+)"', response.content.decode()).group(
            1
        )
    )


def nav_url(response, name: str) -> str | None:
    match = re.search(rf'href="([^"]+)"[^>]*data-nav="{name}"', response.content.decode())
    return match.group(1).replace("&amp;", "&") if match else None


def test_tagging_page_shows_the_image_and_numbered_tag_buttons(client, users, tags, images):
    client.force_login(users["annotator"])
    image = images[2]
    response = client.get(f"/projects/{image.project_id}/images/{image.id}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert f'src="{image.file.url}"' in html
    assert re.findall(r'data-key="(\d)"', html) == ["1", "2", "3"]
    assert 'data-testid="auto-advance"' in html  # multiclass


def test_multiclass_key_replaces_the_tag(client, users, tags, images):
    client.force_login(users["annotator"])
    image = images[0]
    assert toggle(client, image, tags[0], version=1).status_code == 200
    response = toggle(client, image, tags[1], version=2)
    assert response.status_code == 200
    assert tag_names(image) == {"banana"}
    # A plain toggle answers with the tag form only, carrying the new version.
    assert response.content.decode().lstrip().startswith('<form id="tag-form"')
    assert 'name="version" value="3"' in response.content.decode()
    assert 'aria-pressed="true"' in response.content.decode()
    event = json.loads(response["HX-Trigger"])["tags-changed"]
    assert event["image_id"] == image.id
    assert event["message"] == "banana added, apple removed"
    # What U / Ctrl+Z puts back: the tags before, guarded by the version this save made.
    assert event["undo"] == {
        "url": f"/projects/{image.project_id}/images/{image.id}/tags/undo/",
        "image_url": f"/projects/{image.project_id}/images/{image.id}/",
        "tags": str(tags[0].id),
        "version": 3,
    }


def test_multiclass_key_of_the_current_tag_toggles_it_off_without_advance(
    client, users, tags, images
):
    client.force_login(users["annotator"])
    toggle(client, images[0], tags[0], version=1)
    toggle(client, images[0], tags[0], version=2)
    assert tag_names(images[0]) == set()
    assert not Image.objects.get(pk=images[0].pk).is_tagged


def test_multilabel_keys_add_and_remove_tags(client, users, project, tags, images):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.MULTILABEL)
    client.force_login(users["annotator"])
    image = images[0]
    toggle(client, image, tags[0], version=1)
    toggle(client, image, tags[2], version=2)
    assert tag_names(image) == {"apple", "cherry"}
    toggle(client, image, tags[0], version=3)
    assert tag_names(image) == {"cherry"}


def test_negative_excludes_the_other_tags_both_ways(client, users, project, tags, negative, images):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.MULTILABEL)
    client.force_login(users["annotator"])
    image = images[0]
    toggle(client, image, tags[0], version=1)
    toggle(client, image, tags[1], version=2)
    toggle(client, image, negative, version=3)
    assert tag_names(image) == {"none of these"}
    toggle(client, image, tags[2], version=4)
    assert tag_names(image) == {"cherry"}


def test_second_save_with_the_same_version_is_a_conflict_and_the_first_stands(
    client, users, tags, images
):
    image = images[0]
    client.force_login(users["annotator"])
    first = toggle(client, image, tags[0], version=1)
    client.force_login(users["reviewer"])
    second = toggle(client, image, tags[1], version=1)
    assert first.status_code == 200
    assert second.status_code == 409
    html = second.content.decode()
    assert "Someone else changed this image" in html
    assert 'data-testid="reload"' in html and "data-conflict" in html
    assert tag_names(image) == {"apple"}
    assert version(image) == 2


def test_auto_advance_tags_and_shows_the_next_image_of_the_filter(client, users, tags, images):
    client.force_login(users["annotator"])
    ImageTagFactory(image=images[3], tag=tags[0])
    Image.objects.filter(pk=images[3].pk).update(is_tagged=True)
    response = toggle(client, images[4], tags[1], version=1, advance=True, query="?filter=untagged")
    assert tag_names(images[4]) == {"banana"}
    # images[3] is tagged, so the next untagged image in gallery order is images[2].
    assert stage_image_id(response) == images[2].id
    assert response["HX-Retarget"] == "#tagging-stage"
    expected = f"/projects/{images[2].project_id}/images/{images[2].id}/?filter=untagged"
    assert response["HX-Push-Url"] == expected
    assert f'value="{images[2].version}"' in response.content.decode()


def test_auto_advance_on_the_current_tag_removes_it_stays_and_says_so(client, users, tags, images):
    client.force_login(users["annotator"])
    toggle(client, images[1], tags[0], version=1)
    response = toggle(client, images[1], tags[0], version=2, advance=True)
    assert tag_names(images[1]) == set()
    assert response.content.decode().lstrip().startswith('<form id="tag-form"')
    assert "HX-Push-Url" not in response and "HX-Retarget" not in response
    assert json.loads(response["HX-Trigger"])["tags-changed"]["message"] == "apple removed"


def undo(client, image, *, tags, version):
    return client.post(
        f"/projects/{image.project_id}/images/{image.id}/tags/undo/",
        {"tags": ",".join(str(t.id) for t in tags), "version": version},
        headers=HTMX,
    )


def test_undo_puts_back_the_tags_before_the_last_change_and_shows_the_image(
    client, users, tags, images
):
    client.force_login(users["annotator"])
    toggle(client, images[1], tags[0], version=1)
    event = json.loads(toggle(client, images[1], tags[0], version=2)["HX-Trigger"])
    assert tag_names(images[1]) == set()
    response = undo(
        client, images[1], tags=[tags[0]], version=event["tags-changed"]["undo"]["version"]
    )
    assert response.status_code == 200
    assert tag_names(images[1]) == {"apple"}
    assert Image.objects.get(pk=images[1].pk).is_tagged
    assert stage_image_id(response) == images[1].id
    event = json.loads(response["HX-Trigger"])["tags-changed"]
    assert event["message"] == "Undone: apple added"
    assert event["undo"] is None


def test_undo_after_someone_else_changed_the_image_is_a_conflict(client, users, tags, images):
    client.force_login(users["annotator"])
    toggle(client, images[1], tags[0], version=1)  # version 2: apple
    toggle(client, images[1], tags[1], version=2)  # version 3: banana, by someone else
    response = undo(client, images[1], tags=[], version=2)
    assert response.status_code == 409
    assert 'data-testid="conflict"' in response.content.decode()
    assert tag_names(images[1]) == {"banana"}


def test_undo_refuses_a_tag_of_another_project(client, users, tags, images):
    other = TagFactory(project=ProjectFactory(), name="elsewhere")
    client.force_login(users["annotator"])
    toggle(client, images[1], tags[0], version=1)
    response = undo(client, images[1], tags=[other], version=2)
    assert response.status_code == 404
    assert tag_names(images[1]) == {"apple"}


def test_auto_advance_on_the_last_image_stays_and_says_so(client, users, tags, images):
    client.force_login(users["annotator"])
    response = toggle(client, images[0], tags[0], version=1, advance=True)
    assert stage_image_id(response) == images[0].id
    assert "last image" in response.content.decode()
    assert "HX-Push-Url" not in response


def test_auto_advance_does_not_apply_to_multilabel(client, users, project, tags, images):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.MULTILABEL)
    client.force_login(users["annotator"])
    response = toggle(client, images[3], tags[0], version=1, advance=True)
    assert response.content.decode().lstrip().startswith('<form id="tag-form"')
    assert "HX-Push-Url" not in response and "HX-Retarget" not in response
    assert tag_names(images[3]) == {"apple"}


def test_tag_of_another_project_is_refused(client, users, tags, images):
    client.force_login(users["annotator"])
    foreign = TagFactory(project=ProjectFactory())
    response = toggle(client, images[0], foreign, version=1)
    assert response.status_code == 422
    assert tag_names(images[0]) == set()


def test_detection_images_say_the_box_editor_is_elsewhere(client, users, project, images):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    client.force_login(users["annotator"])
    html = client.get(f"/projects/{project.id}/images/{images[0].id}/").content.decode()
    assert 'data-testid="box-editor-coming"' in html
    assert 'id="tag-form"' not in html


def test_next_and_previous_follow_the_gallery_order(client, users, tags, images):
    client.force_login(users["annotator"])
    response = client.get(f"/projects/{images[2].project_id}/images/{images[2].id}/")
    assert nav_url(response, "next").startswith(
        f"/projects/{images[2].project_id}/images/{images[1].id}/"
    )
    assert nav_url(response, "previous").endswith(f"/images/{images[3].id}/")
    first = client.get(f"/projects/{images[4].project_id}/images/{images[4].id}/")
    assert nav_url(first, "previous") is None
    last = client.get(f"/projects/{images[0].project_id}/images/{images[0].id}/")
    assert nav_url(last, "next") is None


def test_next_and_previous_keep_the_tag_filter(client, users, tags, images):
    for image in (images[0], images[2], images[4]):
        ImageTagFactory(image=image, tag=tags[1])
    client.force_login(users["annotator"])
    query = f"?tag={tags[1].id}"
    response = client.get(f"/projects/{images[2].project_id}/images/{images[2].id}/{query}")
    assert nav_url(response, "next") == (
        f"/projects/{images[0].project_id}/images/{images[0].id}/{query}"
    )
    assert nav_url(response, "previous") == (
        f"/projects/{images[4].project_id}/images/{images[4].id}/{query}"
    )


def test_n_goes_to_the_next_untagged_image_and_wraps_round(client, users, tags, images):
    for image in (images[3], images[1], images[0]):
        ImageTagFactory(image=image, tag=tags[0])
    Image.objects.filter(pk__in=[images[3].pk, images[1].pk, images[0].pk]).update(is_tagged=True)
    client.force_login(users["annotator"])
    response = client.get(f"/projects/{images[4].project_id}/images/{images[4].id}/")
    assert nav_url(response, "next-untagged").endswith(f"/images/{images[2].id}/")
    # From images[2] nothing untagged follows: N wraps to the newest untagged image.
    response = client.get(f"/projects/{images[2].project_id}/images/{images[2].id}/")
    assert nav_url(response, "next-untagged").endswith(f"/images/{images[4].id}/")


def test_the_next_images_file_is_named_for_preloading(client, users, images):
    client.force_login(users["annotator"])
    response = client.get(f"/projects/{images[2].project_id}/images/{images[2].id}/")
    preload = re.search(r'data-preload="([^"]*)"', response.content.decode()).group(1).split()
    assert images[1].file.url in preload


def test_htmx_navigation_gets_only_the_stage(client, users, images):
    client.force_login(users["annotator"])
    response = client.get(f"/projects/{images[2].project_id}/images/{images[2].id}/", headers=HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="tagging-stage"')
    assert "<html" not in html


def test_annotator_cannot_delete_and_sees_the_button_disabled(client, users, images):
    client.force_login(users["annotator"])
    page = client.get(f"/projects/{images[2].project_id}/images/{images[2].id}/")
    assert re.search(r'data-testid="delete-image"\s+disabled', page.content.decode())
    response = client.post(
        f"/projects/{images[2].project_id}/images/{images[2].id}/delete/", headers=HTMX
    )
    assert response.status_code == 403
    assert Image.objects.filter(pk=images[2].pk).exists()


def test_reviewer_deletes_and_sees_the_next_image(client, users, images):
    client.force_login(users["reviewer"])
    response = client.post(
        f"/projects/{images[2].project_id}/images/{images[2].id}/delete/", headers=HTMX
    )
    assert response.status_code == 200
    assert not Image.objects.filter(pk=images[2].pk).exists()
    assert stage_image_id(response) == images[1].id
    assert response["HX-Push-Url"].endswith(f"/images/{images[1].id}/")


def test_deleting_the_only_image_returns_to_the_gallery(client, users, project):
    image = ImageFactory(project=project)
    client.force_login(users["admin"])
    response = client.post(f"/projects/{project.id}/images/{image.id}/delete/")
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.id}/"


def test_non_member_gets_404_for_page_save_and_delete(client, users, tags, images):
    client.force_login(users["non_member"])
    image = images[0]
    assert client.get(f"/projects/{image.project_id}/images/{image.id}/").status_code == 404
    assert toggle(client, image, tags[0], version=1).status_code == 404
    assert client.post(f"/projects/{image.project_id}/images/{image.id}/delete/").status_code == 404
    assert tag_names(image) == set()
    assert Image.objects.filter(pk=image.pk).exists()


def test_image_of_another_project_is_404(client, users, project):
    other = ImageFactory(project=ProjectFactory())
    client.force_login(users["admin"])
    assert client.get(f"/projects/{project.id}/images/{other.id}/").status_code == 404


def test_save_without_javascript_redirects_to_the_image(client, users, tags, images):
    client.force_login(users["annotator"])
    response = client.post(
        f"/projects/{images[3].project_id}/images/{images[3].id}/tags/?filter=untagged",
        {"tag": tags[0].id, "version": 1, "advance": "1"},
    )
    assert response.status_code == 302
    assert response["Location"] == (
        f"/projects/{images[3].project_id}/images/{images[2].id}/?filter=untagged"
    )
    assert tag_names(images[3]) == {"apple"}
