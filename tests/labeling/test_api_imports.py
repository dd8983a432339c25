"""The REST API of dataset imports: start (admins), poll (reviewers and up) until the job ends."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Image
from labeling.tasks_import import import_dataset_task
from tests.conftest import make_image

pytestmark = pytest.mark.django_db


def folders_zip(*files: tuple[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            archive.writestr(name, data)
    return SimpleUploadedFile("set.zip", buffer.getvalue(), content_type="application/zip")


def start(client, project, archive, fmt: str = "folders"):
    return client.post(
        f"/api/projects/{project.pk}/imports/",
        {"archive": archive, "format": fmt},
        format="multipart",
    )


def test_start_then_poll_until_done(api_client, project, users):
    archive = folders_zip(
        ("cat/one.png", make_image(40, 40, (200, 10, 10))),
        ("dog/two.png", make_image(40, 40, (10, 200, 10))),
    )
    api_client.force_authenticate(users["admin"])
    started = start(api_client, project, archive)
    assert started.status_code == 202, started.content
    job = started.json()
    assert job["state"] == "queued" and job["is_finished"] is False
    url = f"/api/projects/{project.pk}/imports/{job['job_id']}/"
    assert api_client.get(url).json()["state"] == "queued"
    # The worker's task, run here.
    assert import_dataset_task(project.pk, job["job_id"], users["admin"].pk, "folders") == "done"
    api_client.force_authenticate(users["reviewer"])
    polled = api_client.get(url).json()
    assert polled["state"] == "done" and polled["is_finished"] is True
    assert polled["progress"] == 1.0 and polled["problems"] == []
    assert Image.objects.filter(project=project).count() == 2


def test_a_failed_import_says_why_per_item(api_client, project, users):
    archive = folders_zip(
        ("cat/one.png", make_image(40, 40, (200, 10, 10))),
        ("dog/broken.png", b"not an image"),
    )
    api_client.force_authenticate(users["admin"])
    job = start(api_client, project, archive).json()
    assert import_dataset_task(project.pk, job["job_id"], users["admin"].pk, "folders") == "failed"
    polled = api_client.get(f"/api/projects/{project.pk}/imports/{job['job_id']}/").json()
    assert polled["state"] == "failed" and polled["is_finished"] is True
    assert "Nothing was imported" in polled["message"]
    assert len(polled["problems"]) == 1 and "broken.png" in str(polled["problems"][0])
    assert not Image.objects.filter(project=project).exists()


def test_only_admins_start_and_bad_uploads_are_refused(api_client, project, users):
    archive = folders_zip(("cat/one.png", make_image(40, 40)))
    api_client.force_authenticate(users["reviewer"])
    assert start(api_client, project, archive).status_code == 403
    api_client.force_authenticate(users["admin"])
    not_zip = SimpleUploadedFile("a.zip", b"plain text", content_type="application/zip")
    refused = start(api_client, project, not_zip)
    assert refused.status_code == 422 and "zip" in refused.json()["message"]
    unknown = start(api_client, project, folders_zip(("a/b.png", make_image())), fmt="pascal")
    assert unknown.status_code == 422 and "pascal" in unknown.json()["message"]
    missing = api_client.post(f"/api/projects/{project.pk}/imports/", {"format": "folders"})
    assert missing.status_code == 400 and missing.json()["field"] == "archive"
    nothing = api_client.get(
        f"/api/projects/{project.pk}/imports/00000000-0000-0000-0000-000000000000/"
    )
    assert nothing.status_code == 404 and nothing.json()["code"] == "not_found"
