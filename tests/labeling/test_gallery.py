"""The gallery through HTTP: filters and counts, seek paging, thumbnails, bulk actions, roles."""

from __future__ import annotations

import json
import os
import re

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.models import Image, ImageTag, Project
from tests.factories import ImageFactory, ImageTagFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db


def shown_ids(response) -> list[int]:
    """The image ids of the thumbnails on the page, in display order."""
    return [
        int(i)
        for i in re.findall(r'data-testid="thumb" data-image-id="(\d+)"', response.content.decode())
    ]


def count(response, key: str) -> int:
    match = re.search(rf'data-testid="count-{key}">(\d+)<', response.content.decode())
    assert match, f"no count for {key}"
    return int(match.group(1))


@pytest.fixture
def tags(project):
    return [TagFactory(project=project, name=name) for name in ("cat", "dog", "bird")]


@pytest.fixture
def labeled(project, tags):
    """8 images: 2 cat, 1 dog, 5 untagged, plus a stored prediction that is not training data."""
    images = [ImageFactory(project=project) for _ in range(8)]
    for image, tag in zip(images[:3], [tags[0], tags[0], tags[1]], strict=True):
        ImageTagFactory(image=image, tag=tag)
        Image.objects.filter(pk=image.pk).update(is_tagged=True)
    # A reviewer has tagged a stored prediction: its label must not count until it is promoted.
    prediction = ImageFactory(project=project, is_training=False, is_tagged=True)
    ImageTagFactory(image=prediction, tag=tags[0])
    return images


def test_gallery_counts_all_tagged_untagged_and_each_tag(client, users, project, tags, labeled):
    client.force_login(users["annotator"])
    response = client.get(f"/projects/{project.id}/")
    assert response.status_code == 200
    assert count(response, "all") == 8
    assert count(response, "tagged") == 3
    assert count(response, "untagged") == 5
    assert count(response, f"tag-{tags[0].id}") == 2
    assert count(response, f"tag-{tags[1].id}") == 1
    assert count(response, f"tag-{tags[2].id}") == 0
    # Newest first, and the stored prediction is not a training image.
    assert shown_ids(response) == sorted((i.id for i in labeled), reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("filter=tagged", [0, 1, 2]),
        ("filter=untagged", [3, 4, 5, 6, 7]),
        ("tag=TAG0", [0, 1]),
        ("tag=TAG1", [2]),
    ],
)
def test_gallery_filters_show_only_matching_images(
    client, users, project, tags, labeled, query, expected
):
    client.force_login(users["annotator"])
    query = query.replace("TAG0", str(tags[0].id)).replace("TAG1", str(tags[1].id))
    response = client.get(f"/projects/{project.id}/?{query}")
    assert shown_ids(response) == sorted((labeled[i].id for i in expected), reverse=True)


def test_gallery_ignores_a_tag_of_another_project(client, users, project, labeled):
    foreign = TagFactory(project=ProjectFactory(), name="foreign")
    client.force_login(users["annotator"])
    response = client.get(f"/projects/{project.id}/?tag={foreign.id}")
    assert len(shown_ids(response)) == 8


def test_gallery_pages_by_30_with_older_and_newer_links(client, users, project):
    images = [ImageFactory(project=project) for _ in range(65)]
    ids = sorted((i.id for i in images), reverse=True)
    client.force_login(users["annotator"])

    first = client.get(f"/projects/{project.id}/")
    assert shown_ids(first) == ids[:30]
    assert 'data-testid="page-newer"' not in first.content.decode()
    older = re.search(r'href="([^"]+)"[^>]*data-testid="page-older"', first.content.decode())
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert shown_ids(second) == ids[30:60]
    third = client.get(f"/projects/{project.id}/?after={ids[59]}")
    assert shown_ids(third) == ids[60:]
    assert 'data-testid="page-older"' not in third.content.decode()
    back = client.get(f"/projects/{project.id}/?before={ids[60]}")
    assert shown_ids(back) == ids[30:60]


def test_gallery_page_cursor_keeps_the_filter(client, users, project, tags):
    images = [ImageFactory(project=project) for _ in range(40)]
    for image in images:
        ImageTagFactory(image=image, tag=tags[0])
    ImageFactory(project=project)  # untagged: never in the tag filter
    client.force_login(users["annotator"])
    first = client.get(f"/projects/{project.id}/?tag={tags[0].id}")
    older = re.search(r'href="([^"]+)"[^>]*data-testid="page-older"', first.content.decode())
    assert f"tag={tags[0].id}" in older.group(1)
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert shown_ids(second) == sorted((i.id for i in images), reverse=True)[30:]


def test_gallery_query_count_is_the_same_on_the_first_and_a_far_page(
    client, users, project, tags, django_assert_num_queries
):
    images = [ImageFactory(project=project) for _ in range(95)]
    for n, image in enumerate(images):
        ImageTagFactory(image=image, tag=tags[n % 3])
    client.force_login(users["annotator"])
    ids = sorted((i.id for i in images), reverse=True)
    # session, user, project, membership, tags, page, other-side check, prefetched labels,
    # label counts, per-tag counts (two), the suggestions extension's filter count, page
    # badges, run and progress counts (four), and the saved filters: 16, whatever the depth or
    # the filter.
    with django_assert_num_queries(16):
        assert len(shown_ids(client.get(f"/projects/{project.id}/"))) == 30
    with django_assert_num_queries(16):
        assert len(shown_ids(client.get(f"/projects/{project.id}/?after={ids[60]}"))) == 30
    with django_assert_num_queries(16):
        response = client.get(f"/projects/{project.id}/?tag={tags[1].id}&after={ids[40]}")
        assert len(shown_ids(response)) == 18


def test_gallery_query_count_does_not_grow_with_images_on_the_page(client, users, project, tags):
    client.force_login(users["annotator"])
    ImageTagFactory(image=ImageFactory(project=project), tag=tags[0])
    with CaptureQueriesContext(connection) as one:
        client.get(f"/projects/{project.id}/")
    for image in [ImageFactory(project=project) for _ in range(29)]:
        ImageTagFactory(image=image, tag=tags[1])
    with CaptureQueriesContext(connection) as thirty:
        client.get(f"/projects/{project.id}/")
    assert len(thirty) == len(one)


def test_thumbnail_placeholder_until_the_worker_has_made_it(client, users, project):
    waiting = ImageFactory(project=project)
    done = ImageFactory(project=project)
    done.thumbnail.save("thumb.jpg", ContentFile(b"jpeg"), save=True)
    client.force_login(users["annotator"])
    html = client.get(f"/projects/{project.id}/").content.decode()
    assert html.count('data-testid="thumb-pending"') == 1
    assert done.thumbnail.url in html
    assert f'data-image-id="{waiting.id}"' in html


def test_small_images_get_a_warning_badge(client, users, project):
    ImageFactory(project=project, width=8, height=300)
    ImageFactory(project=project, width=640, height=480)
    client.force_login(users["annotator"])
    html = client.get(f"/projects/{project.id}/").content.decode()
    assert html.count('data-testid="small-badge"') == 1


def test_thumbnails_link_to_the_tagging_view_keeping_the_filter(client, users, project, labeled):
    client.force_login(users["annotator"])
    html = client.get(f"/projects/{project.id}/?filter=untagged").content.decode()
    assert f'href="/projects/{project.id}/images/{labeled[7].id}/?filter=untagged"' in html


def test_htmx_request_gets_only_the_targeted_partial(client, users, project, labeled):
    client.force_login(users["annotator"])
    response = client.get(
        f"/projects/{project.id}/?filter=tagged",
        headers={"HX-Request": "true", "HX-Target": "image-grid"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="image-grid"')
    assert "<html" not in html and 'id="filter-bar"' not in html
    assert len(shown_ids(response)) == 3


def test_gallery_is_404_for_a_non_member_and_login_for_anonymous(client, users, project):
    client.force_login(users["non_member"])
    assert client.get(f"/projects/{project.id}/").status_code == 404
    client.logout()
    response = client.get(f"/projects/{project.id}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- Bulk actions -----------------------------------------------------------------------------


def bulk(client, project, action, images, tag=None, query="", htmx=True):
    data = {"action": action, "image_ids": [i.id for i in images]}
    if tag is not None:
        data["tag"] = tag.id
    headers = {"HX-Request": "true", "HX-Target": "image-grid"} if htmx else {}
    return client.post(f"/projects/{project.id}/images/bulk/{query}", data, headers=headers)


def tag_names(image) -> set[str]:
    return set(ImageTag.objects.filter(image=image).values_list("tag__name", flat=True))


def test_bulk_tag_and_untag_through_the_services(client, users, project, tags, labeled):
    client.force_login(users["annotator"])
    picked = labeled[3:6]
    response = bulk(client, project, "tag", picked, tags[2])
    assert response.status_code == 200
    assert "gallery-changed" in json.loads(response["HX-Trigger"])
    assert 'data-testid="bulk-notice"' in response.content.decode()
    assert all(tag_names(i) == {"bird"} for i in picked)
    assert Image.objects.filter(pk__in=[i.id for i in picked], is_tagged=True).count() == 3

    response = bulk(client, project, "untag", picked[:2], tags[2])
    assert response.status_code == 200
    assert [tag_names(i) for i in picked] == [set(), set(), {"bird"}]
    assert not Image.objects.get(pk=picked[0].pk).is_tagged


def test_bulk_tag_in_multiclass_replaces_the_old_tag(client, users, project, tags, labeled):
    client.force_login(users["annotator"])
    bulk(client, project, "tag", labeled[:2], tags[1])
    assert tag_names(labeled[0]) == {"dog"}


def test_bulk_tag_in_multilabel_adds_and_negative_replaces(client, users, project, tags, labeled):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.MULTILABEL)
    negative = TagFactory(project=project, name="none", kind="negative")
    client.force_login(users["annotator"])
    bulk(client, project, "tag", labeled[:1], tags[1])
    assert tag_names(labeled[0]) == {"cat", "dog"}
    bulk(client, project, "tag", labeled[:1], negative)
    assert tag_names(labeled[0]) == {"none"}


def test_bulk_answer_is_the_same_filtered_page(client, users, project, tags, labeled):
    client.force_login(users["annotator"])
    response = bulk(client, project, "tag", labeled[3:5], tags[0], query="?filter=untagged")
    # The two just tagged leave the untagged view; the other three remain.
    assert shown_ids(response) == sorted((i.id for i in labeled[5:8]), reverse=True)


def test_annotator_cannot_bulk_delete(client, users, project, labeled):
    client.force_login(users["annotator"])
    response = bulk(client, project, "delete", labeled[:2])
    assert response.status_code == 403
    assert "reviewer role" in response.content.decode()
    assert Image.objects.filter(pk__in=[labeled[0].id, labeled[1].id]).count() == 2


def test_reviewer_bulk_deletes_images_and_their_files(client, users, project, labeled):
    client.force_login(users["reviewer"])
    path = labeled[0].file.path
    response = bulk(client, project, "delete", labeled[:2])
    assert response.status_code == 200
    assert not Image.objects.filter(pk__in=[labeled[0].id, labeled[1].id]).exists()
    assert Image.objects.filter(project=project, is_training=True).count() == 6
    assert not os.path.exists(path)


def test_delete_button_only_for_reviewers(client, users, project, labeled):
    client.force_login(users["annotator"])
    assert (
        'data-testid="bulk-delete-button"'
        not in client.get(f"/projects/{project.id}/").content.decode()
    )
    client.force_login(users["reviewer"])
    assert (
        'data-testid="bulk-delete-button"'
        in client.get(f"/projects/{project.id}/").content.decode()
    )


def test_bulk_action_is_404_for_a_non_member(client, users, project, tags, labeled):
    client.force_login(users["non_member"])
    assert bulk(client, project, "tag", labeled[3:4], tags[0]).status_code == 404
    assert bulk(client, project, "delete", labeled[3:4]).status_code == 404
    assert tag_names(labeled[3]) == set()


def test_bulk_does_not_touch_images_of_another_project(client, users, project, tags):
    other = ImageFactory(project=ProjectFactory())
    client.force_login(users["admin"])
    bulk(client, project, "tag", [other], tags[0])
    bulk(client, project, "delete", [other])
    assert Image.objects.filter(pk=other.pk).exists()
    assert tag_names(other) == set()


def test_bulk_without_selection_or_tag_is_422(client, users, project, tags, labeled):
    client.force_login(users["annotator"])
    response = bulk(client, project, "tag", [], tags[0])
    assert response.status_code == 422
    assert "Select at least one image" in response.content.decode()
    response = bulk(client, project, "tag", labeled[3:4])
    assert response.status_code == 422
    assert tag_names(labeled[3]) == set()


def test_bulk_without_javascript_redirects_back_to_the_filtered_gallery(
    client, users, project, tags, labeled
):
    client.force_login(users["annotator"])
    response = bulk(
        client, project, "tag", labeled[3:4], tags[0], query="?filter=untagged", htmx=False
    )
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.id}/?filter=untagged"
    assert tag_names(labeled[3]) == {"cat"}
