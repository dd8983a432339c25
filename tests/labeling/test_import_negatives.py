"""Images an imported COCO, VOC or YOLO file lists without a box are negatives ("No objects"),
so detection training learns the background from them; an image no file speaks for stays
untagged."""

from __future__ import annotations

import json

import pytest

from labeling.models import Membership, Project, Role
from tests.conftest import make_image
from tests.factories import ProjectFactory, UserFactory
from tests.labeling.dataset_helpers import import_through_page, make_zip
from training.services.checks import take_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = UserFactory(username="negatives-admin")
    client.force_login(user)
    return user


@pytest.fixture
def project(admin):
    project = ProjectFactory(kind=Project.Kind.DETECTION, owner=admin)
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    return project


def marks(project, name):
    image = project.images.get(original_name=name)
    return (
        image.is_tagged,
        image.regions.count(),
        list(image.image_tags.values_list("tag__kind", flat=True)),
    )


def run_import(client, project, admin, entries, fmt, capture):
    result = import_through_page(client, project, admin, make_zip(entries), fmt, capture)
    assert result["state"] == "done", result["job"].problems
    return result


def test_coco_images_without_annotations_become_negatives(
    client, admin, project, django_capture_on_commit_callbacks
):
    annotations = {
        "images": [
            {"id": 1, "file_name": "cat.png", "width": 8, "height": 8},
            {"id": 2, "file_name": "empty.png", "width": 8, "height": 8},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}],
    }
    entries = {
        "annotations.json": json.dumps(annotations).encode(),
        "cat.png": make_image(8, 8, (1, 2, 3)),
        "empty.png": make_image(8, 8, (4, 5, 6)),
    }

    run_import(client, project, admin, entries, "coco", django_capture_on_commit_callbacks)

    assert marks(project, "cat.png") == (True, 1, [])
    assert marks(project, "empty.png") == (True, 0, ["negative"])
    snapshot = take_snapshot(project)
    assert sorted(image.is_negative for image in snapshot.images) == [False, True]


def test_voc_files_without_objects_become_negatives(
    client, admin, project, django_capture_on_commit_callbacks
):
    empty = (
        b"<annotation><filename>a.png</filename><size><width>8</width><height>8</height>"
        b"</size></annotation>"
    )
    entries = {"Annotations/a.xml": empty, "JPEGImages/a.png": make_image()}

    run_import(client, project, admin, entries, "voc", django_capture_on_commit_callbacks)

    assert marks(project, "a.png") == (True, 0, ["negative"])


def test_yolo_empty_label_files_are_negatives_and_images_without_one_stay_untagged(
    client, admin, project, django_capture_on_commit_callbacks
):
    entries = {
        "classes.txt": b"cat\n",
        "images/boxed.png": make_image(8, 8, (1, 2, 3)),
        "labels/boxed.txt": b"0 0.5 0.5 0.2 0.2\n",
        "images/empty.png": make_image(8, 8, (4, 5, 6)),
        "labels/empty.txt": b"",
        "images/unlabelled.png": make_image(8, 8, (7, 8, 9)),
    }

    run_import(client, project, admin, entries, "yolo", django_capture_on_commit_callbacks)

    assert marks(project, "boxed.png") == (True, 1, [])
    assert marks(project, "empty.png") == (True, 0, ["negative"])
    assert marks(project, "unlabelled.png") == (False, 0, [])
