"""The upload page: an admin adds a tag inline (create_tag's rules and role), chosen at once for
the batch; the "Go to the images" link after a finished upload."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Project, Tag
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db


def url(project: Project) -> str:
    return f"/projects/{project.pk}/upload/"


def checked_ids(html: str) -> set[str]:
    return set(re.findall(r'name="tag_ids" value="(\d+)"[^>]*checked', html))


def test_an_admin_adds_a_tag_with_htmx_and_it_comes_chosen(client, users):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL)
    MembershipFactory(project=project, user=users["admin"], role="admin")
    apple = TagFactory(project=project, name="apple")
    client.force_login(users["admin"])
    response = client.post(
        url(project), {"new_tag": " pear ", "tag_ids": [apple.pk]}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<fieldset class="upload-tags" id="upload-tags"')  # partial
    pear = Tag.objects.get(project=project, name="pear")
    assert checked_ids(html) == {str(apple.pk), str(pear.pk)}  # kept, and the new one


def test_in_a_multiclass_project_the_new_tag_is_the_one_chosen(client, project, users):
    apple = TagFactory(project=project, name="apple")
    client.force_login(users["admin"])
    response = client.post(
        url(project), {"new_tag": "pear", "tag_ids": apple.pk}, headers={"HX-Request": "true"}
    )
    assert checked_ids(response.content.decode()) == {
        str(Tag.objects.get(project=project, name="pear").pk)
    }


def test_a_duplicate_name_is_refused_with_the_services_message(client, project, users):
    TagFactory(project=project, name="Apple")
    client.force_login(users["admin"])
    response = client.post(url(project), {"new_tag": "apple"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 422
    assert "There is already a tag called" in html
    assert 'data-testid="upload-new-tag-error"' in html
    assert project.tags.count() == 1


def test_without_javascript_the_new_tag_redirects_back(client, project, users):
    client.force_login(users["admin"])
    response = client.post(url(project), {"new_tag": "pear"})
    assert response.status_code == 302
    assert response["Location"] == url(project)
    page = client.get(url(project)).content.decode()
    assert "Tag “pear” added." in page
    assert "pear" in page


def test_annotators_see_no_new_tag_field_and_cannot_post_one(client, project, users):
    client.force_login(users["annotator"])
    assert 'data-testid="upload-new-tag"' not in client.get(url(project)).content.decode()
    response = client.post(url(project), {"new_tag": "pear"}, headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert not project.tags.filter(name="pear").exists()
    client.force_login(users["admin"])
    assert 'data-testid="upload-new-tag"' in client.get(url(project)).content.decode()


def test_the_go_to_the_images_link_waits_for_a_finished_upload(client, project, users):
    client.force_login(users["annotator"])
    assert re.search(r"<p data-upload-done\s+hidden>", client.get(url(project)).content.decode())
    response = client.post(
        url(project),
        {"files": [SimpleUploadedFile("a.png", make_image(300, 300), "image/png")]},
    )
    html = response.content.decode()
    assert re.search(r"<p data-upload-done\s*>", html)
    assert f'href="/projects/{project.pk}/" data-testid="upload-go-images"' in html
