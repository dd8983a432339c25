"""Export jobs: the native API (start, poll, download), the sweep that ends every job, and
storage that is not a local disk."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.test import override_settings

from labeling.models import ImageTag, Membership, Project, Role
from labeling.services import export_jobs
from labeling.services.export_jobs import get_export, run_export, start_export, sweep_exports
from labeling.tasks_export import export_dataset_task
from tests.conftest import make_image
from tests.factories import ImageFactory, ProjectFactory, TagFactory, UserFactory
from tests.streaming import body_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer():
    return UserFactory(username="export-reviewer")


@pytest.fixture
def project(reviewer):
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Fruit stand")
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    apple = TagFactory(project=project, name="apple")
    pear = TagFactory(project=project, name="pear")
    for number, tag in enumerate([apple, apple, pear, None]):
        image = ImageFactory(
            project=project,
            original_name=f"fruit{number}.png",
            content=make_image(10, 10, (number * 40, 10, 10)),
            is_tagged=tag is not None,
        )
        if tag is not None:
            ImageTag.objects.create(image=image, tag=tag)
    return project


def test_api_starts_polls_and_downloads_an_export(
    api_client, reviewer, project, django_capture_on_commit_callbacks
):
    api_client.force_authenticate(reviewer)
    base = f"/api/projects/{project.pk}/exports/"
    apple = project.tags.get(name="apple")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        started = api_client.post(base, {"format": "csv", "tag_ids": [apple.pk]}, format="json")
    assert started.status_code == 202, started.content
    body = started.json()
    assert (body["state"], body["format"], body["tag_ids"]) == ("queued", "csv", [apple.pk])
    assert body["download_url"] is None
    assert len(callbacks) == 1
    early = api_client.get(f"{base}{body['id']}/download/")
    assert early.status_code == 422 and early.json()["code"] == "invalid"

    assert export_dataset_task(project.pk, body["id"]) == "done"
    polled = api_client.get(f"{base}{body['id']}/").json()
    assert polled["state"] == "done" and polled["images"] == 2 and polled["progress"] == 1.0
    assert polled["file_name"] == "fruit-stand-csv.zip"
    download = api_client.get(polled["download_url"])
    assert download.status_code == 200
    assert 'filename="fruit-stand-csv.zip"' in download["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(body_of(download))) as archive:
        names = sorted(archive.namelist())
        assert names == ["images/fruit0.png", "images/fruit1.png", "labels.csv", "loupe.json"]
        assert archive.testzip() is None
    listed = api_client.get(base).json()
    assert [job["id"] for job in listed] == [body["id"]]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"format": "coco"}, 422),  # a detection format in a classification project
        ({"format": "tiff"}, 400),
        ({"format": "csv", "tag_ids": ["a"]}, 400),
        ({"format": "csv", "filter": "nope"}, 422),
    ],
)
def test_api_refuses_bad_export_requests(api_client, reviewer, project, payload, status):
    api_client.force_authenticate(reviewer)
    response = api_client.post(f"/api/projects/{project.pk}/exports/", payload, format="json")
    assert response.status_code == status
    assert response.json()["message"].endswith(".")
    assert not default_storage.exists(f"exports/{project.pk}")


def test_unknown_export_is_404(api_client, reviewer, project):
    api_client.force_authenticate(reviewer)
    response = api_client.get(
        f"/api/projects/{project.pk}/exports/00000000-0000-4000-8000-000000000000/"
    )
    assert response.status_code == 404


def test_sweep_requeues_a_lost_worker_then_fails_the_job(
    project, reviewer, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(export_jobs, "send", lambda *args, **kwargs: sent.append(args) or True)
    with django_capture_on_commit_callbacks(execute=False):
        job = start_export(project=project, format_name="folders", by=reviewer)
    # A worker took it and died: running, lease run out.
    job.state, job.attempts, job.lease_expires = export_jobs.RUNNING, 1, time.time() - 1
    export_jobs._write(job)
    assert sweep_exports() == 1
    assert get_export(project=project, job_id=job.job_id).state == "queued"
    assert sent == [("labeling.export_dataset", project.pk, job.job_id)]
    job = get_export(project=project, job_id=job.job_id)
    job.state, job.attempts, job.lease_expires = export_jobs.RUNNING, 2, time.time() - 1
    export_jobs._write(job)
    assert sweep_exports() == 1
    failed = get_export(project=project, job_id=job.job_id)
    assert failed.state == "failed" and "stopped without a word" in failed.message
    # A delivery that arrives afterwards does nothing to a finished job.
    assert run_export(project_id=project.pk, job_id=job.job_id).state == "failed"


def test_sweep_fails_a_job_no_worker_took_and_deletes_expired_exports(
    project, reviewer, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=False):
        waiting = start_export(project=project, format_name="folders", by=reviewer)
        done = start_export(project=project, format_name="csv", by=reviewer)
    done = run_export(project_id=project.pk, job_id=done.job_id)
    assert default_storage.exists(done.file)
    later = time.time() + settings.LOUPE_IMPORT_QUEUED_MAX_S + 1
    settings.LOUPE_EXPORT_KEEP_S = settings.LOUPE_IMPORT_QUEUED_MAX_S
    assert sweep_exports(now=later) == 2
    assert get_export(project=project, job_id=waiting.job_id).state == "failed"
    assert not default_storage.exists(done.file)
    with pytest.raises(export_jobs.NotFound):
        get_export(project=project, job_id=done.job_id)


def test_a_live_lease_makes_a_second_delivery_do_nothing(
    project, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = start_export(project=project, format_name="folders", by=reviewer)
    job.state, job.attempts, job.lease_expires = export_jobs.RUNNING, 1, time.time() + 60
    export_jobs._write(job)
    assert run_export(project_id=project.pk, job_id=job.job_id).state == "running"
    assert not get_export(project=project, job_id=job.job_id).file


@override_settings(
    STORAGES={
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
)
def test_export_works_on_storage_that_is_not_a_local_disk(
    client, reviewer, django_capture_on_commit_callbacks
):
    """Media may be S3: images, status and archive go through the storage API only."""
    from django.core.files.storage import storages

    assert type(storages["default"]).__name__ == "InMemoryStorage"
    project = ProjectFactory(kind=Project.Kind.MULTICLASS)
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    image = ImageFactory(project=project, original_name="a.png", content=make_image(9, 9))
    client.force_login(reviewer)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/projects/{project.pk}/datasets/exports/", {"format": "folders"})
    job_id = response.url.split("export=")[1]
    assert export_dataset_task(project.pk, job_id) == "done"
    download = client.get(f"/projects/{project.pk}/datasets/exports/{job_id}/download/")
    with zipfile.ZipFile(io.BytesIO(body_of(download))) as archive:
        with image.file.open("rb") as original:
            assert archive.read("a.png") == original.read()
        assert json.loads(archive.read("loupe.json"))["kind"] == "multiclass"


def test_an_empty_project_exports_an_archive_with_its_tags(
    reviewer, django_capture_on_commit_callbacks
):
    project = ProjectFactory(kind=Project.Kind.DETECTION, name="Empty")
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    TagFactory(project=project, name="car")
    with django_capture_on_commit_callbacks(execute=False):
        job = start_export(project=project, format_name="coco", by=reviewer)
    job = run_export(project_id=project.pk, job_id=job.job_id)
    assert (job.state, job.images, job.message) == ("done", 0, "Exported 0 images.")
    with default_storage.open(job.file, "rb") as handle, zipfile.ZipFile(handle) as archive:
        document = json.loads(archive.read("annotations.json"))
        assert document["images"] == [] and document["categories"][0]["name"] == "car"
        assert json.loads(archive.read("loupe.json"))["tags"] == ["car"]
