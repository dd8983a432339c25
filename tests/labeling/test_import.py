"""Dataset import: broken or hostile archives are reported item by item, nothing half-imported."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Image, ImageTag, Membership, Project, Region, Role, Tag
from labeling.tasks_import import import_dataset_task
from tests.conftest import make_image
from tests.factories import ProjectFactory, UserFactory
from tests.labeling.dataset_helpers import import_through_page, make_zip, stored_image_files

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


def coco(images, annotations, categories=({"id": 1, "name": "cat"},)):
    return json.dumps(
        {"images": images, "categories": list(categories), "annotations": annotations}
    ).encode()


def problems_by_code(result):
    return sorted((p["item"], p["code"]) for p in result["job"].problems)


def assert_nothing_imported(project):
    assert not project.images.exists()
    assert not Region.objects.filter(image__project=project).exists()
    assert not ImageTag.objects.filter(image__project=project).exists()
    assert not Tag.objects.filter(project=project).exists()
    assert stored_image_files() == []
    assert not list((Path(settings.MEDIA_ROOT) / "imports").rglob("archive.zip"))


def test_coco_import_creates_tags_images_and_boxes(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    data = make_zip(
        {
            "data/annotations.json": coco(
                [
                    {"id": 7, "file_name": "a.png", "width": 40, "height": 20},
                    {"id": 8, "file_name": "pics/b.png", "width": 10, "height": 10},
                ],
                [
                    {"id": 1, "image_id": 7, "category_id": 1, "bbox": [4, 2, 20, 10]},
                    {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 40, 20]},
                ],
                [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            ),
            "data/a.png": make_image(40, 20, (1, 2, 3)),
            "pics/b.png": make_image(10, 10, (4, 5, 6)),
        }
    )
    result = import_through_page(
        client, project, admin, data, "coco", django_capture_on_commit_callbacks
    )
    assert result["state"] == "done"
    assert "Imported 2 images." in result["html"]
    # b.png has no box: it is marked "No objects", which makes the project's Negative tag.
    assert list(project.tags.values_list("name", flat=True)) == ["cat", "dog", "Negative"]
    image = project.images.get(original_name="a.png")
    assert image.source == Image.Source.IMPORT and image.is_tagged
    boxes = sorted(image.regions.values_list("tag__name", "left", "top", "width", "height"))
    assert boxes == [("cat", 0.1, 0.1, 0.5, 0.5), ("dog", 0.0, 0.0, 1.0, 1.0)]
    # Listed in the file without a box: "No objects" (a negative), not an untagged image.
    b = project.images.get(original_name="b.png")
    assert b.is_tagged and not b.regions.exists()
    assert list(b.image_tags.values_list("tag__kind", flat=True)) == ["negative"]


def test_box_outside_image_and_missing_image_are_each_reported_and_nothing_imported(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    data = make_zip(
        {
            "annotations.json": coco(
                [
                    {"id": 1, "file_name": "a.png", "width": 40, "height": 20},
                    {"id": 2, "file_name": "gone.png", "width": 40, "height": 20},
                ],
                [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 0, 20, 10]},
                    {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0.5, 10]},
                    {"id": 3, "image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5]},
                ],
            ),
            "a.png": make_image(40, 20),
        }
    )
    result = import_through_page(
        client, project, admin, data, "coco", django_capture_on_commit_callbacks
    )
    assert result["state"] == "failed"
    assert problems_by_code(result) == [
        ("a.png", "box_outside"),
        ("a.png", "invalid"),
        ("annotation 3", "missing_image"),
        ("gone.png", "missing_image"),
    ]
    assert "reaches outside the image" in result["html"]
    assert "smaller than 1 pixel" in result["html"]
    assert_nothing_imported(project)


def test_malformed_annotation_file_is_reported(client, admin, django_capture_on_commit_callbacks):
    project = new_project(admin)
    data = make_zip({"annotations.json": b'{"images": [', "a.png": make_image()})
    result = import_through_page(
        client, project, admin, data, "coco", django_capture_on_commit_callbacks
    )
    assert problems_by_code(result) == [("annotations.json", "malformed")]
    assert "not valid JSON" in result["html"]
    assert_nothing_imported(project)


def test_paths_escaping_the_archive_and_symlinks_are_refused(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    data = make_zip(
        {
            "annotations.json": coco(
                [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], []
            ),
            "a.png": make_image(),
            "../evil.png": make_image(8, 8, (0, 0, 1)),
            "/etc/cron.d/evil.png": make_image(8, 8, (0, 0, 2)),
            "images\\..\\..\\win.png": make_image(8, 8, (0, 0, 3)),
        },
        symlinks={"link.png": "/etc/passwd"},
    )
    result = import_through_page(
        client, project, admin, data, "coco", django_capture_on_commit_callbacks
    )
    assert result["state"] == "failed"
    assert problems_by_code(result) == [
        ("../evil.png", "unsafe_path"),
        ("/etc/cron.d/evil.png", "unsafe_path"),
        ("images\\..\\..\\win.png", "unsafe_path"),
        ("link.png", "symlink"),
    ]
    assert_nothing_imported(project)
    assert not (Path(settings.MEDIA_ROOT).parent / "evil.png").exists()


def test_voc_with_an_external_entity_is_refused(client, admin, django_capture_on_commit_callbacks):
    project = new_project(admin)
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<annotation><filename>a.png</filename><size><width>8</width><height>8</height>"
        b"</size><object><name>&x;</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>4</xmax>"
        b"<ymax>4</ymax></bndbox></object></annotation>"
    )
    data = make_zip({"Annotations/a.xml": xxe, "JPEGImages/a.png": make_image()})
    result = import_through_page(
        client, project, admin, data, "voc", django_capture_on_commit_callbacks
    )
    assert problems_by_code(result) == [("Annotations/a.xml", "malformed")]
    assert "root:" not in result["html"]
    assert_nothing_imported(project)


def test_a_rejected_image_rolls_back_the_others_and_removes_their_files(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    labels = {f"labels/{n}.txt": b"0 0.5 0.5 0.5 0.5\n" for n in ("a", "b", "c")}
    data = make_zip(
        {
            "classes.txt": b"cat\n",
            "images/a.png": make_image(16, 16, (1, 1, 1)),
            "images/b.png": b"this is not an image",
            "images/c.png": make_image(16, 16, (3, 3, 3)),
            **labels,
        }
    )
    result = import_through_page(
        client, project, admin, data, "yolo", django_capture_on_commit_callbacks
    )
    assert result["state"] == "failed"
    assert problems_by_code(result) == [("images/b.png", "not_an_image")]
    assert_nothing_imported(project)


def test_yolo_problems_name_the_label_file_and_line(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin)
    data = make_zip(
        {
            "classes.txt": b"cat\n",
            "images/a.png": make_image(),
            "labels/a.txt": b"0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n",
            "labels/orphan.txt": b"0 0.5 0.5 0.2 0.2\n",
        }
    )
    result = import_through_page(
        client, project, admin, data, "yolo", django_capture_on_commit_callbacks
    )
    assert problems_by_code(result) == [
        ("labels/a.txt", "malformed"),
        ("labels/orphan.txt", "missing_image"),
    ]
    assert "Line 2 of “labels/a.txt” names class 3" in result["job"].problems[0]["message"]
    assert_nothing_imported(project)


def test_multiclass_csv_with_two_tags_on_an_image_imports_nothing(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTICLASS)
    data = make_zip(
        {
            "labels.csv": b"file,tags\na.png,cat\nb.png,cat;dog\n",
            "a.png": make_image(8, 8, (1, 1, 1)),
            "b.png": make_image(8, 8, (2, 2, 2)),
        }
    )
    result = import_through_page(
        client, project, admin, data, "csv", django_capture_on_commit_callbacks
    )
    assert result["state"] == "failed"
    assert problems_by_code(result) == [("b.png", "label_rule")]
    assert_nothing_imported(project)


def test_running_the_task_again_does_not_import_twice(
    client, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    data = make_zip({"cat/a.png": make_image(8, 8, (1, 1, 1))})
    result = import_through_page(
        client, project, admin, data, "folders", django_capture_on_commit_callbacks
    )
    assert result["state"] == "done"
    assert import_dataset_task(project.pk, result["job_id"], admin.pk, "folders") == "done"
    assert project.images.count() == 1


def test_only_admins_import_and_other_projects_jobs_are_not_found(
    client, client_for, admin, django_capture_on_commit_callbacks
):
    project = new_project(admin, Project.Kind.MULTILABEL)
    reviewer = UserFactory()
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    data = make_zip({"cat/a.png": make_image()})
    response = client_for(reviewer).post(
        f"/projects/{project.pk}/datasets/",
        {"format": "folders", "archive": SimpleUploadedFile("d.zip", data)},
    )
    assert response.status_code == 403
    assert "admin role" in response.content.decode()
    client_for(admin)
    result = import_through_page(
        client, project, admin, data, "folders", django_capture_on_commit_callbacks
    )
    other = new_project(admin, Project.Kind.MULTILABEL)
    response = client.get(f"/projects/{other.pk}/datasets/imports/{result['job_id']}/")
    assert response.status_code == 404
    assert client_for(UserFactory()).get(f"/projects/{project.pk}/datasets/").status_code == 404


def test_a_file_that_is_not_a_zip_is_refused_on_the_page(client, admin):
    project = new_project(admin)
    response = client.post(
        f"/projects/{project.pk}/datasets/",
        {"format": "coco", "archive": SimpleUploadedFile("d.zip", b"not a zip")},
    )
    assert response.status_code == 422
    assert "not a zip archive" in response.content.decode()
