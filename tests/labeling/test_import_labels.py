"""Labels only: a bare COCO (or VOC, CSV) annotation file onto images already in the project,
matched by file name, as the same background job as the zip import (report, lease, sweep)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Image, Membership, Project, Role
from labeling.services import import_jobs
from labeling.services.import_jobs import DONE, FAILED, QUEUED, RUNNING, get_import, sweep_imports
from labeling.tasks_import import import_dataset_task
from tests.factories import ImageFactory, ProjectFactory, RegionFactory, TagFactory, UserFactory
from tests.labeling.dataset_helpers import make_zip

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = UserFactory(username="labels-admin")
    client.force_login(user)
    return user


def new_project(admin, kind=Project.Kind.DETECTION) -> Project:
    project = ProjectFactory(kind=kind, owner=admin)
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    return project


def stored(project, name: str, size: int = 100) -> Image:
    return ImageFactory(project=project, original_name=name, width=size, height=size)


def coco(images: list[str], boxes: dict[str, list[list[float]]], size: int = 100) -> bytes:
    entries = [
        {"id": i, "file_name": n, "width": size, "height": size} for i, n in enumerate(images, 1)
    ]
    ids = {n: i for i, n in enumerate(images, 1)}
    annotations = [
        {"id": k, "image_id": ids[name], "category_id": 1, "bbox": bbox}
        for k, (name, bbox) in enumerate(
            ((name, bbox) for name, rows in boxes.items() for bbox in rows), start=1
        )
    ]
    document = {
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}],
    }
    return json.dumps(document).encode()


def start(client, project, data: bytes, name: str, fmt: str, capture) -> str:
    with capture(execute=False) as callbacks:
        response = client.post(
            f"/projects/{project.pk}/datasets/",
            {"format": fmt, "contents": "labels", "archive": SimpleUploadedFile(name, data)},
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert len(callbacks) == 1
    return response.url.split("job=")[1]


def boxes_of(image: Image) -> list[tuple[str, float, float]]:
    return sorted((r.tag.name, round(r.left, 3), round(r.width, 3)) for r in image.regions.all())


def test_a_bare_coco_file_labels_the_images_it_names_and_reports_the_rest(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    dog = TagFactory(project=project, name="dog")
    a, b, untouched = stored(project, "a.jpg"), stored(project, "b.jpg"), stored(project, "c.jpg")
    RegionFactory(image=b, tag=dog)  # replaced by the file's boxes
    RegionFactory(image=untouched, tag=dog)  # not named by the file: kept
    twin1, twin2 = stored(project, "twin.jpg"), stored(project, "twin.jpg")
    data = coco(
        ["a.jpg", "b.jpg", "missing.jpg", "twin.jpg"],
        {"a.jpg": [[10, 10, 20, 20]], "b.jpg": [[50, 0, 50, 50]], "twin.jpg": [[0, 0, 5, 5]]},
    )
    job_id = start(
        client, project, data, "annotations.json", "coco", django_capture_on_commit_callbacks
    )
    assert import_dataset_task(project.pk, job_id, admin.pk, "coco") == DONE
    job = get_import(project=project, job_id=job_id)
    assert job.labels_only
    assert job.message == "Labeled 2 images of the project; 2 listed images skipped."
    assert {(s["item"], s["code"]) for s in job.skipped} == {
        ("missing.jpg", "not_found"),
        ("twin.jpg", "ambiguous_name"),
    }
    assert boxes_of(a) == [("cat", 0.1, 0.2)]
    assert boxes_of(b) == [("cat", 0.5, 0.5)]
    assert boxes_of(untouched) == [("dog", 0.1, 0.5)]
    assert not twin1.regions.exists() and not twin2.regions.exists()
    assert project.images.count() == 5  # no image added
    html = client.get(f"/projects/{project.pk}/datasets/imports/{job_id}/").content.decode()
    assert 'data-testid="import-skipped"' in html
    assert "No training image of this project is “missing.jpg”." in html
    assert "2 images of this project are called “twin.jpg”" in html
    assert not list((Path(settings.MEDIA_ROOT) / "imports").rglob("archive.zip"))


def test_a_problem_in_the_file_itself_changes_nothing(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    a = stored(project, "a.jpg")
    data = coco(["a.jpg"], {"a.jpg": [[90, 90, 30, 30]]})  # past the right and bottom edges
    job_id = start(
        client, project, data, "annotations.json", "coco", django_capture_on_commit_callbacks
    )
    assert import_dataset_task(project.pk, job_id, admin.pk, "coco") == FAILED
    job = get_import(project=project, job_id=job_id)
    assert [p["code"] for p in job.problems] == ["box_outside"]
    assert not a.regions.exists()
    assert not project.tags.exists()  # "cat" was not created either


def test_a_declared_size_that_differs_from_the_stored_image_stops_it(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    stored(project, "a.jpg", size=64)
    data = coco(["a.jpg"], {"a.jpg": [[1, 1, 5, 5]]}, size=100)
    job_id = start(
        client, project, data, "annotations.json", "coco", django_capture_on_commit_callbacks
    )
    assert import_dataset_task(project.pk, job_id, admin.pk, "coco") == FAILED
    assert [p["code"] for p in get_import(project=project, job_id=job_id).problems] == [
        "size_mismatch"
    ]


def test_a_zip_of_voc_files(client, admin, django_capture_on_commit_callbacks):
    project = new_project(admin)
    a = stored(project, "a.jpg")
    xml = (
        b"<annotation><filename>a.jpg</filename><size><width>100</width><height>100</height>"
        b"</size><object><name>cat</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>30</xmax>"
        b"<ymax>30</ymax></bndbox></object></annotation>"
    )
    job_id = start(
        client,
        project,
        make_zip({"Annotations/a.xml": xml}),
        "voc.zip",
        "voc",
        django_capture_on_commit_callbacks,
    )
    assert import_dataset_task(project.pk, job_id, admin.pk, "voc") == DONE
    assert boxes_of(a) == [("cat", 0.1, 0.2)]


def test_a_bare_csv_file_tags_a_classification_project(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    a = stored(project, "a.jpg")
    job_id = start(
        client,
        project,
        b"file,tags\na.jpg,cat;dog\n",
        "labels.csv",
        "csv",
        django_capture_on_commit_callbacks,
    )
    assert import_dataset_task(project.pk, job_id, admin.pk, "csv") == DONE
    assert sorted(a.image_tags.values_list("tag__name", flat=True)) == ["cat", "dog"]


def test_yolo_names_no_image_file_and_is_refused_up_front(client, admin):
    project = new_project(admin)
    response = client.post(
        f"/projects/{project.pk}/datasets/",
        {
            "format": "yolo",
            "contents": "labels",
            "archive": SimpleUploadedFile("y.zip", make_zip({"classes.txt": b"cat\n"})),
        },
    )
    assert response.status_code == 422
    assert "cannot label images already in the project" in response.content.decode()


def test_a_lost_worker_is_swept_and_the_rerun_is_still_labels_only(
    client, admin, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(import_jobs, "send", lambda name, *a, **k: sent.append((name, a)) or True)
    project = new_project(admin)
    a = stored(project, "a.jpg")
    data = coco(["a.jpg"], {"a.jpg": [[10, 10, 20, 20]]})
    job_id = start(
        client, project, data, "annotations.json", "coco", django_capture_on_commit_callbacks
    )
    job = get_import(project=project, job_id=job_id)
    job.state, job.attempts, job.lease_expires = RUNNING, 1, time.time() - 1
    import_jobs._write(job)
    assert sweep_imports() == 1
    assert get_import(project=project, job_id=job_id).state == QUEUED
    assert import_dataset_task(*sent[0][1]) == DONE
    assert boxes_of(a) == [("cat", 0.1, 0.2)]
    assert project.images.count() == 1
