"""Saved gallery filters: the service's rules, the gallery's save/open/delete, the native API,
and exports that choose their images by a saved filter."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.models import Image, ImageTag, Membership, Project, Role, SavedFilter
from labeling.services.datasets import ExportSelection
from labeling.services.export_jobs import get_export, start_export
from labeling.services.projects import delete_tag
from labeling.services.saved_filters import (
    delete_filter,
    export_selection,
    resolve_filter,
    save_filter,
)
from labeling.tasks_export import export_dataset_task
from project.errors import Forbidden, NotFound, ValidationFailed
from tests.conftest import make_image
from tests.factories import ImageFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(project):
    return {name: TagFactory(project=project, name=name) for name in ("cat", "dog", "bird")}


@pytest.fixture
def images(project, tags):
    """Two cats, one dog, one bird, two untagged: named after what they hold."""
    made = {}
    for name, tag in [
        ("cat1", "cat"),
        ("cat2", "cat"),
        ("dog1", "dog"),
        ("bird1", "bird"),
        ("plain1", None),
        ("plain2", None),
    ]:
        image = ImageFactory(
            project=project,
            original_name=f"{name}.png",
            content=make_image(10, 10, (len(made) * 30, 20, 20)),
            is_tagged=tag is not None,
        )
        if tag is not None:
            ImageTag.objects.create(image=image, tag=tags[tag])
        made[name] = image
    return made


def shown_ids(response) -> set[int]:
    return {
        int(i)
        for i in re.findall(r'data-testid="thumb" data-image-id="(\d+)"', response.content.decode())
    }


# --- The service ------------------------------------------------------------------------------


def test_annotator_saves_a_filter_with_the_gallery_fields(project, users, tags):
    saved = save_filter(
        project=project,
        name="  Cats  and dogs ",
        by=users["annotator"],
        tag_ids=[tags["dog"].pk, tags["cat"].pk],
    )
    saved.refresh_from_db()
    assert saved.name == "Cats and dogs"
    assert (saved.status, saved.tag_ids) == ("all", sorted([tags["cat"].pk, tags["dog"].pk]))
    assert saved.created_by == users["annotator"]


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("", "all", "Give the filter a name."),
        ("   ", "all", "Give the filter a name."),
        ("x" * 101, "all", "at most 100 characters"),
        ("Odd", "sideways", "Unknown gallery filter"),
    ],
)
def test_save_refuses_bad_names_and_statuses(project, users, name, status, message):
    with pytest.raises(ValidationFailed, match=message):
        save_filter(project=project, name=name, status=status, by=users["annotator"])
    assert not SavedFilter.objects.exists()


def test_save_refuses_a_duplicate_name_in_any_case_but_not_in_another_project(project, users):
    save_filter(project=project, name="Untagged", status="untagged", by=users["annotator"])
    with pytest.raises(ValidationFailed) as caught:
        save_filter(project=project, name="UNTAGGED", by=users["reviewer"])
    assert caught.value.code == "duplicate_name"
    other = ProjectFactory()
    Membership.objects.create(project=other, user=users["annotator"], role=Role.ANNOTATOR)
    save_filter(project=other, name="Untagged", by=users["annotator"])
    assert SavedFilter.objects.count() == 2


def test_save_refuses_a_tag_of_another_project(project, users):
    stranger = TagFactory(project=ProjectFactory(), name="cat")
    with pytest.raises(ValidationFailed, match="no tag with id"):
        save_filter(project=project, name="Theirs", tag_ids=[stranger.pk], by=users["annotator"])


def test_non_members_cannot_save_and_only_the_saver_or_an_admin_deletes(project, users):
    with pytest.raises(NotFound):
        save_filter(project=project, name="Mine", by=users["non_member"])
    saved = save_filter(project=project, name="Mine", by=users["annotator"])
    with pytest.raises(Forbidden):
        delete_filter(saved_filter=saved, by=users["reviewer"])
    delete_filter(saved_filter=saved, by=users["annotator"])
    again = save_filter(project=project, name="Mine", by=users["annotator"])
    delete_filter(saved_filter=again, by=users["admin"])
    assert not SavedFilter.objects.exists()


def test_a_deleted_tag_drops_out_and_a_filter_left_without_tags_refuses_to_export(
    project, users, tags
):
    both = save_filter(
        project=project, name="Pets", tag_ids=[tags["cat"].pk, tags["dog"].pk], by=users["admin"]
    )
    dogs = save_filter(project=project, name="Dogs", tag_ids=[tags["dog"].pk], by=users["admin"])
    dog_id = tags["dog"].pk
    delete_tag(tag=tags["dog"], by=users["admin"])
    resolved = resolve_filter(both)
    assert resolved.selection.tag_ids == (tags["cat"].pk,)
    assert resolved.dropped_tag_ids == (dog_id,)
    assert export_selection(both) == ExportSelection(tag_ids=(tags["cat"].pk,))
    # Without its only tag it would export every image: it says so instead.
    with pytest.raises(ValidationFailed) as caught:
        export_selection(dogs)
    assert caught.value.code == "filter_tags_gone"


# --- The gallery ------------------------------------------------------------------------------


def test_gallery_saves_its_filter_then_lists_and_opens_it(client, project, users, tags, images):
    client.force_login(users["annotator"])
    response = client.post(f"/projects/{project.id}/filters/?filter=untagged", {"name": "To do"})
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.id}/?filter=untagged"
    saved = SavedFilter.objects.get()
    assert (saved.name, saved.status, saved.tag_ids) == ("To do", "untagged", [])

    page = client.get(f"/projects/{project.id}/")
    link = re.search(
        r'<a href="([^"]+)"[^>]*data-testid="saved-filter-link">★ To do</a>',
        page.content.decode(),
        re.S,
    )
    assert link, "the saved filter is listed as a link"
    opened = client.get(link.group(1).replace("&amp;", "&"))
    assert shown_ids(opened) == {images["plain1"].pk, images["plain2"].pk}


def test_gallery_saves_a_tag_filter(client, project, users, tags, images):
    client.force_login(users["annotator"])
    cat = tags["cat"].pk
    client.post(f"/projects/{project.id}/filters/?tag={cat}", {"name": "Cats"})
    assert SavedFilter.objects.get().tag_ids == [cat]
    page = client.get(f"/projects/{project.id}/?tag={cat}")
    # The open filter is marked in the list.
    assert 'aria-current="true" data-testid="saved-filter-link">★ Cats' in page.content.decode()


def test_gallery_answers_422_with_the_form_for_a_bad_or_taken_name(client, project, users):
    client.force_login(users["annotator"])
    empty = client.post(f"/projects/{project.id}/filters/", {"name": " "})
    assert empty.status_code == 422
    assert "Give the filter a name." in empty.content.decode()
    client.post(f"/projects/{project.id}/filters/", {"name": "Everything"})
    taken = client.post(
        f"/projects/{project.id}/filters/", {"name": "everything"}, headers={"HX-Request": "true"}
    )
    assert taken.status_code == 422
    body = taken.content.decode()
    assert body.lstrip().startswith('<section id="saved-filters"')  # the htmx partial alone
    assert "already has a saved filter named" in body and 'value="everything"' in body
    assert SavedFilter.objects.count() == 1


def test_gallery_htmx_save_answers_the_refreshed_list(client, project, users):
    client.force_login(users["annotator"])
    response = client.post(
        f"/projects/{project.id}/filters/?filter=tagged",
        {"name": "Done"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="save-filter-notice"' in body and "★ Done" in body


def test_gallery_lists_saved_filters_in_a_constant_number_of_queries(client, project, users, tags):
    client.force_login(users["annotator"])
    save_filter(project=project, name="One", tag_ids=[tags["cat"].pk], by=users["admin"])
    with CaptureQueriesContext(connection) as one:
        client.get(f"/projects/{project.id}/")
    for n in range(10):
        save_filter(project=project, name=f"More {n}", tag_ids=[tags["dog"].pk], by=users["admin"])
    with CaptureQueriesContext(connection) as eleven:
        page = client.get(f"/projects/{project.id}/")
    assert page.content.decode().count('data-testid="saved-filter-link"') == 11
    assert len(eleven.captured_queries) == len(one.captured_queries)


def test_gallery_deletes_a_filter_and_refuses_someone_elses(client, project, users):
    saved = save_filter(project=project, name="Admin's", by=users["admin"])
    client.force_login(users["annotator"])
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert "★ Admin&#x27;s" in page and 'data-testid="saved-filter-delete"' not in page
    assert client.post(f"/projects/{project.id}/filters/{saved.pk}/delete/").status_code == 403
    client.force_login(users["admin"])
    response = client.post(f"/projects/{project.id}/filters/{saved.pk}/delete/?filter=tagged")
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.id}/?filter=tagged"
    assert not SavedFilter.objects.exists()


def test_gallery_opens_a_filter_of_several_tags_as_a_set(client, project, users, tags, images):
    saved = save_filter(
        project=project, name="Pets", tag_ids=[tags["cat"].pk, tags["dog"].pk], by=users["admin"]
    )
    client.force_login(users["annotator"])
    page = client.get(f"/projects/{project.id}/?saved={saved.pk}")
    assert shown_ids(page) == {images["cat1"].pk, images["cat2"].pk, images["dog1"].pk}
    assert "Saved filter “Pets”" in page.content.decode()
    # The tagging view walks the same set, newest first: from the dog, Next is the newer cat.
    tagging = client.get(f"/projects/{project.id}/images/{images['dog1'].pk}/?saved={saved.pk}")
    assert tagging.status_code == 200
    assert f"/images/{images['cat2'].pk}/?saved={saved.pk}" in tagging.content.decode()
    delete_tag(tag=tags["cat"], by=users["admin"])
    delete_tag(tag=tags["dog"], by=users["admin"])
    gone = client.get(f"/projects/{project.id}/?saved={saved.pk}")
    assert gone.status_code == 200 and shown_ids(gone) == set()
    assert "its tags were deleted" in gone.content.decode()


# --- Exports by a saved filter ----------------------------------------------------------------


def _archive_images(project: Project, job_id: str) -> list[str]:
    job = get_export(project=project, job_id=job_id)
    with (
        default_storage.open(job.file, "rb") as handle,
        zipfile.ZipFile(io.BytesIO(handle.read())) as archive,
    ):
        return sorted(n for n in archive.namelist() if n.startswith("images/"))


def test_export_by_saved_filter_holds_exactly_its_images(project, users, tags, images):
    saved = save_filter(
        project=project,
        name="Pets",
        status="tagged",
        tag_ids=[tags["cat"].pk, tags["dog"].pk],
        by=users["annotator"],
    )
    job = start_export(project=project, format_name="csv", by=users["reviewer"], saved_filter=saved)
    assert job.saved_filter == "Pets"
    # Resolved when it starts: deleting the filter before the worker runs changes nothing.
    delete_filter(saved_filter=saved, by=users["annotator"])
    assert export_dataset_task(project.pk, job.job_id) == "done"
    assert _archive_images(project, job.job_id) == [
        "images/cat1.png",
        "images/cat2.png",
        "images/dog1.png",
    ]
    assert get_export(project=project, job_id=job.job_id).as_dict()["saved_filter"] == "Pets"


def test_export_by_saved_status_filter(project, users, tags, images):
    saved = save_filter(project=project, name="To do", status="untagged", by=users["annotator"])
    job = start_export(project=project, format_name="csv", by=users["admin"], saved_filter=saved)
    assert export_dataset_task(project.pk, job.job_id) == "done"
    assert _archive_images(project, job.job_id) == ["images/plain1.png", "images/plain2.png"]


def test_export_refuses_a_saved_filter_with_other_choices_and_annotators(project, users, tags):
    saved = save_filter(project=project, name="To do", status="untagged", by=users["annotator"])
    with pytest.raises(ValidationFailed, match="not both"):
        start_export(
            project=project,
            format_name="csv",
            by=users["admin"],
            selection=ExportSelection(tag_ids=(tags["cat"].pk,)),
            saved_filter=saved,
        )
    with pytest.raises(Forbidden):
        start_export(project=project, format_name="csv", by=users["annotator"], saved_filter=saved)


def test_datasets_page_offers_saved_filters_and_lists_the_export_by_name(
    client, project, users, tags, images
):
    saved = save_filter(
        project=project, name="Cats only", tag_ids=[tags["cat"].pk], by=users["admin"]
    )
    client.force_login(users["reviewer"])
    page = client.get(f"/projects/{project.id}/datasets/").content.decode()
    assert f'<option value="{saved.pk}">Cats only (cat)</option>' in page
    response = client.post(
        f"/projects/{project.id}/datasets/exports/",
        {"format": "csv", "filter": "all", "saved_filter": saved.pk},
    )
    assert response.status_code == 302
    job_id = response["Location"].split("export=")[1]
    assert export_dataset_task(project.pk, job_id) == "done"
    assert _archive_images(project, job_id) == ["images/cat1.png", "images/cat2.png"]
    listing = client.get(f"/projects/{project.id}/datasets/").content.decode()
    assert "Saved filter “Cats only”" in listing
    mixed = client.post(
        f"/projects/{project.id}/datasets/exports/",
        {"format": "csv", "filter": "untagged", "saved_filter": saved.pk},
    )
    assert mixed.status_code == 422 and "not both" in mixed.content.decode()


# --- The native API ---------------------------------------------------------------------------


def test_api_creates_lists_reads_and_deletes_saved_filters(api_client, project, users, tags):
    api_client.force_authenticate(users["annotator"])
    base = f"/api/projects/{project.pk}/saved-filters/"
    created = api_client.post(
        base, {"name": "Birds", "filter": "tagged", "tag_ids": [tags["bird"].pk]}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["name"], body["filter"], body["tag_ids"]) == ("Birds", "tagged", [tags["bird"].pk])
    assert body["created_by"] == users["annotator"].username and body["deleted_tag_ids"] == []
    assert [f["name"] for f in api_client.get(base).json()] == ["Birds"]
    assert api_client.get(f"{base}{body['id']}/").json()["id"] == body["id"]

    bird_id = tags["bird"].pk
    delete_tag(tag=tags["bird"], by=users["admin"])
    read = api_client.get(f"{base}{body['id']}/").json()
    assert (read["tag_ids"], read["deleted_tag_ids"]) == ([], [bird_id])

    assert api_client.delete(f"{base}{body['id']}/").status_code == 204
    assert api_client.get(base).json() == []


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"name": ""}, "invalid"),
        ({"name": "y" * 101}, "invalid"),
        ({"name": "Z", "filter": "nope"}, "invalid"),
        ({"name": "Z", "tag_ids": [999999]}, "invalid"),
        ({"name": "taken"}, "duplicate_name"),
    ],
)
def test_api_refuses_bad_saved_filters_with_422(api_client, project, users, payload, code):
    save_filter(project=project, name="Taken", by=users["admin"])
    api_client.force_authenticate(users["annotator"])
    response = api_client.post(f"/api/projects/{project.pk}/saved-filters/", payload, format="json")
    assert response.status_code == 422, response.content
    assert response.json()["code"] == code


def test_api_export_takes_a_saved_filter_id(api_client, project, users, tags, images):
    saved = save_filter(project=project, name="Dogs", tag_ids=[tags["dog"].pk], by=users["admin"])
    api_client.force_authenticate(users["reviewer"])
    base = f"/api/projects/{project.pk}/exports/"
    started = api_client.post(base, {"format": "csv", "saved_filter_id": saved.pk}, format="json")
    assert started.status_code == 202, started.content
    body = started.json()
    assert (body["saved_filter"], body["tag_ids"]) == ("Dogs", [tags["dog"].pk])
    assert export_dataset_task(project.pk, body["id"]) == "done"
    assert _archive_images(project, body["id"]) == ["images/dog1.png"]
    unknown = api_client.post(base, {"format": "csv", "saved_filter_id": 999999}, format="json")
    assert unknown.status_code == 404
    other = ProjectFactory()
    Membership.objects.create(project=other, user=users["admin"], role=Role.ADMIN)
    theirs = save_filter(project=other, name="Theirs", by=users["admin"])
    # Another project's filter is not this project's: 404, never its images.
    assert (
        api_client.post(
            base, {"format": "csv", "saved_filter_id": theirs.pk}, format="json"
        ).status_code
        == 404
    )
    assert Image.objects.filter(project=project).count() == 6
