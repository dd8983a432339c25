"""Every dataset import ends — done or failed with a reason — whatever the archive holds.

Before: a COCO category_id that is a list, a 400-digit width or bbox value, a corrupt deflate
stream and a CSV field over 131,072 characters each raised in the worker (TypeError,
OverflowError, zlib.error, csv.Error); the job stayed "running" for good and its archive.zip
stayed in media/imports/.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from labeling.models import Membership, Project, Role
from labeling.services import import_jobs
from labeling.services.import_jobs import FAILED, QUEUED, RUNNING, get_import, sweep_imports
from labeling.tasks_import import import_dataset_task, sweep_imports_task
from tests.conftest import make_image
from tests.factories import ProjectFactory, UserFactory
from tests.labeling.dataset_helpers import import_through_page, make_zip

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = UserFactory(username="import-admin")
    client.force_login(user)
    return user


def new_project(admin, kind=Project.Kind.DETECTION):
    project = ProjectFactory(kind=kind, owner=admin)
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    return project


def archives_left() -> list[Path]:
    return list((Path(settings.MEDIA_ROOT) / "imports").rglob("archive.zip"))


def coco_zip(*, images=None, annotations=(), categories=({"id": 1, "name": "cat"},)) -> bytes:
    images = images or [{"id": 1, "file_name": "a.png", "width": 40, "height": 20}]
    document = {"images": images, "categories": list(categories), "annotations": list(annotations)}
    return make_zip(
        {"annotations.json": json.dumps(document).encode(), "a.png": make_image(40, 20)}
    )


def run(client, admin, project, data, fmt, capture) -> dict:
    result = import_through_page(client, project, admin, data, fmt, capture)
    assert result["job"].is_finished
    assert archives_left() == []
    return result


@pytest.mark.parametrize("category_id", [[1], {"id": 1}, "1", None, 1.5])
def test_coco_category_id_that_is_not_an_integer_fails_the_job_with_a_reason(
    client, admin, django_capture_on_commit_callbacks, category_id
):
    project = new_project(admin)
    data = coco_zip(
        annotations=[{"id": 1, "image_id": 1, "category_id": category_id, "bbox": [1, 1, 5, 5]}]
    )
    result = run(client, admin, project, data, "coco", django_capture_on_commit_callbacks)
    assert result["state"] == FAILED
    assert [p["code"] for p in result["job"].problems] == ["malformed"]
    assert "category" in result["job"].problems[0]["message"]
    assert not project.images.exists()


@pytest.mark.parametrize("field", ["width", "height"])
def test_coco_400_digit_image_size_fails_the_job_with_a_reason(
    client, admin, django_capture_on_commit_callbacks, field
):
    project = new_project(admin)
    image = {"id": 1, "file_name": "a.png", "width": 40, "height": 20, field: 10**400}
    data = coco_zip(
        images=[image],
        annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
    )
    result = run(client, admin, project, data, "coco", django_capture_on_commit_callbacks)
    assert result["state"] == FAILED
    assert "positive integer" in result["job"].problems[0]["message"]


@pytest.mark.parametrize("value", [10**400, -(10**400), 1e308 * 10])
def test_coco_400_digit_bbox_value_fails_the_job_with_a_reason(
    client, admin, django_capture_on_commit_callbacks, value
):
    project = new_project(admin)
    # json.dumps writes 1e308 * 10 (inf) as Infinity, which Python's json reads back.
    data = coco_zip(
        annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, value, 5, 5]}]
    )
    result = run(client, admin, project, data, "coco", django_capture_on_commit_callbacks)
    assert result["state"] == FAILED
    assert "bbox" in result["job"].problems[0]["message"]


def _zip_with_corrupt_deflate(name: str, data: bytes, others: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for other, content in others.items():
            zf.writestr(other, content)
        zf.writestr(name, data)
        info = zf.getinfo(name)
    raw = bytearray(buffer.getvalue())
    # Garble the compressed bytes (after the 30-byte local header and the name) but not the
    # sizes: zlib reads an invalid deflate stream instead of a CRC mismatch.
    start = info.header_offset + 30 + len(info.filename.encode())
    for offset in range(start, start + min(info.compress_size, 64)):
        raw[offset] = 0xFF
    return bytes(raw)


@pytest.mark.parametrize("member", ["cat/a.png", "labels.csv"])
def test_zip_member_with_a_corrupt_deflate_stream_fails_the_job_with_a_reason(
    client, admin, django_capture_on_commit_callbacks, member
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    image = make_image(64, 64, (10, 200, 30))
    if member == "labels.csv":
        data = _zip_with_corrupt_deflate(
            "labels.csv", b"file,tags\n" + b"a.png,cat\n" * 200, {"a.png": image}
        )
        fmt = "csv"
    else:
        data = _zip_with_corrupt_deflate("cat/a.png", image, {"dog/b.png": make_image(9, 9)})
        fmt = "folders"
    with zipfile.ZipFile(io.BytesIO(data)) as zf, pytest.raises(Exception) as raw_error:
        zf.read(member)
    assert raw_error.type.__module__ == "zlib"  # the case the worker used to die on
    result = run(client, admin, project, data, fmt, django_capture_on_commit_callbacks)
    assert result["state"] == FAILED
    assert "cannot be read" in json.dumps(result["job"].problems)
    assert not project.images.exists()


def test_csv_field_over_131072_characters_fails_the_job_with_a_reason(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    labels = b'file,tags\na.png,"' + b"x" * 140_000 + b'"\n'
    data = make_zip({"labels.csv": labels, "a.png": make_image()})
    result = run(client, admin, project, data, "csv", django_capture_on_commit_callbacks)
    assert result["state"] == FAILED
    assert "longer than 131,072 characters" in result["job"].problems[0]["message"]


def test_unexpected_error_fails_the_job_logs_it_and_deletes_the_archive(
    client, admin, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    project = new_project(admin, Project.Kind.MULTILABEL)

    def bug(*args, **kwargs):  # stands in for a bug nobody has found yet
        raise KeyError("secret internal detail")

    monkeypatch.setattr(import_jobs, "import_dataset", bug)
    data = make_zip({"cat/a.png": make_image()})
    result = run(client, admin, project, data, "folders", django_capture_on_commit_callbacks)
    assert result["state"] == FAILED
    assert "unexpected error" in result["job"].message
    assert "secret internal detail" not in result["html"]
    assert "unexpected error" in result["html"]
    assert any("failed unexpectedly" in r.getMessage() and r.exc_info for r in caplog.records)


# --- Leases and the sweep ---------------------------------------------------------------------


def _started_job(client, admin, project, capture):
    """A job queued through the page, whose worker never ran."""
    data = make_zip({"cat/a.png": make_image()})
    with capture(execute=False):
        response = client.post(
            f"/projects/{project.pk}/datasets/",
            {
                "format": "folders",
                "archive": __import__(
                    "django.core.files.uploadedfile", fromlist=["SimpleUploadedFile"]
                ).SimpleUploadedFile("d.zip", data),
            },
        )
    job_id = response.url.split("job=")[1]
    return get_import(project=project, job_id=job_id)


def _as_if_running(job, *, attempts: int, lease_expires: float) -> None:
    job.state, job.attempts, job.lease_expires = RUNNING, attempts, lease_expires
    job.message = "Reading the archive."
    import_jobs._write(job)


def test_a_delivery_while_another_worker_holds_the_lease_does_nothing(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    job = _started_job(client, admin, project, django_capture_on_commit_callbacks)
    _as_if_running(job, attempts=1, lease_expires=time.time() + 60)
    assert import_dataset_task(project.pk, job.job_id, admin.pk, "folders") == RUNNING
    assert not project.images.exists()
    # Once the lease has run out, a redelivery takes the job over and finishes it.
    _as_if_running(job, attempts=1, lease_expires=time.time() - 1)
    assert import_dataset_task(project.pk, job.job_id, admin.pk, "folders") == "done"
    assert project.images.count() == 1
    assert archives_left() == []


def test_sweep_fails_a_job_whose_worker_vanished_after_its_last_attempt(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    job = _started_job(client, admin, project, django_capture_on_commit_callbacks)
    _as_if_running(job, attempts=import_jobs.MAX_ATTEMPTS, lease_expires=time.time() - 1)
    assert sweep_imports_task() == 1
    job = get_import(project=project, job_id=job.job_id)
    assert job.state == FAILED
    assert "stopped without a word" in job.message
    assert archives_left() == []
    response = client.get(f"/projects/{project.pk}/datasets/imports/{job.job_id}/")
    assert "stopped without a word" in response.content.decode()
    assert sweep_imports() == 0  # a finished job is left alone


def test_sweep_leaves_a_job_with_a_live_lease_alone(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    job = _started_job(client, admin, project, django_capture_on_commit_callbacks)
    _as_if_running(job, attempts=1, lease_expires=time.time() + 60)
    assert sweep_imports() == 0
    assert get_import(project=project, job_id=job.job_id).state == RUNNING


def test_sweep_requeues_a_job_whose_worker_vanished_with_runs_left(
    client, admin, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        import_jobs, "send", lambda name, *args, **kwargs: sent.append((name, args)) or True
    )
    project = new_project(admin, Project.Kind.MULTILABEL)
    job = _started_job(client, admin, project, django_capture_on_commit_callbacks)
    _as_if_running(job, attempts=1, lease_expires=time.time() - 1)
    assert sweep_imports() == 1
    assert get_import(project=project, job_id=job.job_id).state == QUEUED
    assert sent == [("labeling.import_dataset", (project.pk, job.job_id, admin.pk, "folders"))]
    # The re-sent task runs it to the end.
    assert import_dataset_task(*sent[0][1]) == "done"
    assert archives_left() == []


def test_sweep_fails_a_job_no_worker_took_in_time(
    client, admin, django_capture_on_commit_callbacks, settings
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    job = _started_job(client, admin, project, django_capture_on_commit_callbacks)
    assert sweep_imports() == 0
    assert sweep_imports(now=time.time() + settings.LOUPE_IMPORT_QUEUED_MAX_S + 1) == 1
    job = get_import(project=project, job_id=job.job_id)
    assert job.state == FAILED and "No worker took this import" in job.message
    assert archives_left() == []


def test_the_sweep_runs_every_minute():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert any(
        entry["task"] == "labeling.sweep_imports" and entry["schedule"] <= 60
        for entry in schedule.values()
    )


def test_import_fails_at_once_with_a_reason_when_the_broker_is_down(
    client, admin, django_capture_on_commit_callbacks, broker_down
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    data = make_zip({"cat/a.png": make_image()})
    from django.core.files.uploadedfile import SimpleUploadedFile

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/projects/{project.pk}/datasets/",
            {"format": "folders", "archive": SimpleUploadedFile("d.zip", data)},
        )
    assert time.monotonic() - started < 5
    assert response.status_code == 302
    job = get_import(project=project, job_id=response.url.split("job=")[1])
    assert job.state == FAILED
    assert "task queue (Redis) could not be reached" in job.message
    assert archives_left() == []


def test_sweep_ends_jobs_left_running_by_the_old_code(
    client, admin, django_capture_on_commit_callbacks
):
    """A job stuck before leases existed (no lease, no importer recorded) is failed, once."""
    project = new_project(admin, Project.Kind.MULTILABEL)
    job = _started_job(client, admin, project, django_capture_on_commit_callbacks)
    job.user_id, job.created = None, 0.0
    _as_if_running(job, attempts=1, lease_expires=0.0)
    assert sweep_imports() == 1
    job = get_import(project=project, job_id=job.job_id)
    assert job.state == FAILED
    assert archives_left() == []


def test_sweep_fails_a_queued_job_from_the_old_code_once_it_is_old_enough(
    client, admin, django_capture_on_commit_callbacks, settings
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    job = _started_job(client, admin, project, django_capture_on_commit_callbacks)
    job.created = 0.0  # written before jobs recorded it: the file's age counts
    import_jobs._write(job)
    assert sweep_imports() == 0
    assert sweep_imports(now=time.time() + settings.LOUPE_IMPORT_QUEUED_MAX_S + 5) == 1
