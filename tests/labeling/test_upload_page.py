"""The upload page: rendering, roles, and the plain-POST fallback that works without JavaScript."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Project
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db


def url(project: Project) -> str:
    return f"/projects/{project.pk}/upload/"


def test_upload_page_offers_files_folder_tags_and_progress(client, project, users):
    TagFactory(project=project, name="apple")
    client.force_login(users["annotator"])
    response = client.get(url(project))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'enctype="multipart/form-data"' in html
    assert re.search(r'<input type="file" name="files" multiple accept="image/\*"', html)
    assert "webkitdirectory" in html
    assert 'data-testid="upload-progress"' in html and 'aria-valuenow="0"' in html
    assert f'data-upload-url="/api/projects/{project.pk}/images/upload/"' in html
    assert "js/upload-queue.js" in html
    # Multiclass: one tag by radio button, "No tag" included.
    assert re.search(r'type="radio" name="tag_ids" value=""', html)
    assert "apple" in html


def test_multilabel_upload_page_offers_tag_checkboxes(client, users):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL)
    MembershipFactory(project=project, user=users["annotator"])
    tag = TagFactory(project=project, name="pear")
    client.force_login(users["annotator"])
    html = client.get(url(project)).content.decode()
    assert f'type="checkbox" name="tag_ids" value="{tag.pk}"' in html


def test_anonymous_visitor_is_sent_to_log_in(client, project):
    response = client.get(url(project))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_non_member_gets_404(client, project, users):
    client.force_login(users["non_member"])
    assert client.get(url(project)).status_code == 404
    response = client.post(
        url(project), {"files": [SimpleUploadedFile("a.png", make_image(300, 300))]}
    )
    assert response.status_code == 404
    assert not project.images.exists()


def test_plain_post_without_javascript_stores_files_and_shows_the_report(client, project, users):
    tag = TagFactory(project=project, name="apple")
    client.force_login(users["annotator"])
    files = [
        SimpleUploadedFile("good.png", make_image(300, 300)),
        SimpleUploadedFile("small.png", make_image(50, 300, color=(1, 2, 3))),
        SimpleUploadedFile("bad.png", b"plain text"),
    ]
    response = client.post(url(project), {"files": files, "tag_ids": str(tag.pk)})
    html = response.content.decode()
    assert response.status_code == 200
    summary = re.search(r'data-testid="upload-summary"[^>]*>\s*([^<]*)<', html).group(1)
    assert summary.strip() == "2 accepted (1 with warnings), 1 rejected."
    assert 'data-outcome="rejected" data-code="not_an_image"' in html
    assert "upscaled for training" in html
    assert 'aria-valuenow="100"' in html
    images = project.images.all()
    assert sorted(images.values_list("original_name", flat=True)) == ["good.png", "small.png"]
    assert all(list(i.image_tags.values_list("tag_id", flat=True)) == [tag.pk] for i in images)


def test_plain_post_with_a_foreign_tag_is_refused_with_422(client, project, users):
    client.force_login(users["annotator"])
    foreign = TagFactory()
    response = client.post(
        url(project),
        {"files": [SimpleUploadedFile("a.png", make_image(300, 300))], "tag_ids": str(foreign.pk)},
    )
    assert response.status_code == 422
    assert not project.images.exists()


def test_plain_post_without_files_says_so(client, project, users):
    client.force_login(users["annotator"])
    response = client.post(url(project), {})
    assert response.status_code == 422
    assert "Choose at least one image file" in response.content.decode()
