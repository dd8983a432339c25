"""Starting a detection training: the snapshot of boxes and "no objects" images, the refusals."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Project, Region
from tests.factories import ImageFactory, RegionFactory, TagFactory
from tests.training.detection_data import add_boxed_images
from training.models import Iteration, IterationImage, IterationTag
from training.services.detection_checks import MIN_DETECTION_IMAGES_PER_TAG
from training.services.iterations import task_time_limit_s

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(project):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    return project


def post_train(client, project, **data):
    payload = {"training_type": "quick", "budget_minutes": 10, **data}
    return client.post(reverse("training:train", args=[project.id]), payload)


def test_snapshot_holds_boxes_negatives_and_tag_columns(client_for, detection, users, settings):
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 123
    red = TagFactory(project=detection, name="red")
    blue = TagFactory(project=detection, name="blue")
    TagFactory(project=detection, name="unused")  # no boxes: not a column
    images = add_boxed_images(detection, [red, blue], 5, negatives=2)
    both = images[0]
    RegionFactory(image=both, tag=blue, left=0.0, top=0.0, width=0.25, height=0.5)
    untouched = ImageFactory(project=detection)  # nobody looked at it: not training data

    response = post_train(client_for(users["admin"]), detection)

    assert response.status_code == 302
    iteration = Iteration.objects.get(project=detection)
    assert iteration.status == "queued" and iteration.training_type == "quick"
    assert iteration.budget_s == 123  # quick detection trains for the default budget
    assert task_time_limit_s(iteration) > 123
    tags = IterationTag.objects.filter(iteration=iteration).order_by("index")
    assert [(t.name, t.index, t.image_count) for t in tags] == [("red", 0, 5), ("blue", 1, 6)]
    rows = {row.image_id: row for row in IterationImage.objects.filter(iteration=iteration)}
    assert len(rows) == 12 == iteration.image_count
    assert untouched.pk not in rows
    expected = sorted(
        [0 if r.tag_id == red.pk else 1, r.left, r.top, r.width, r.height]
        for r in Region.objects.filter(image=both)
    )
    assert sorted(rows[both.pk].boxes) == expected and len(expected) == 2
    assert rows[both.pk].labels == [0, 1] and not rows[both.pk].is_negative
    negatives = [row for row in rows.values() if row.is_negative]
    assert len(negatives) == 2
    assert all(row.boxes == [] and row.labels == [] for row in negatives)


def test_moving_a_box_is_a_change_since_the_last_iteration(client_for, detection, users):
    red = TagFactory(project=detection, name="red")
    add_boxed_images(detection, [red], 5)
    client = client_for(users["admin"])
    assert post_train(client, detection).status_code == 302
    Iteration.objects.update(status="completed")

    response = post_train(client, detection)
    assert response.status_code == 422
    assert "Nothing changed since Iteration 1" in response.content.decode()

    region = Region.objects.first()
    Region.objects.filter(pk=region.pk).update(left=region.left + 0.01)
    assert post_train(client, detection).status_code == 302
    assert Iteration.objects.count() == 2


def test_one_tag_with_enough_boxed_images_can_train(detection, users, client_for):
    red = TagFactory(project=detection, name="red")
    add_boxed_images(detection, [red], MIN_DETECTION_IMAGES_PER_TAG)
    assert post_train(client_for(users["admin"]), detection).status_code == 302


def test_refuses_a_detection_project_without_boxes(client_for, detection, users):
    TagFactory(project=detection, name="red")
    add_boxed_images(detection, [], 0, negatives=6)  # only "no objects" images

    response = post_train(client_for(users["admin"]), detection)

    assert response.status_code == 422
    assert "Detection training needs boxes" in response.content.decode()
    assert not Iteration.objects.exists()


def test_refuses_a_tag_boxed_on_fewer_than_five_images(client_for, detection, users):
    red = TagFactory(project=detection, name="red")
    blue = TagFactory(project=detection, name="blue")
    add_boxed_images(detection, [red], 6)
    add_boxed_images(detection, [blue], 4, seed=3)

    response = post_train(client_for(users["admin"]), detection)

    assert response.status_code == 422
    page = response.content.decode()
    assert "Each tag needs boxes on at least 5 images to train a detector" in page
    assert "“blue” (4)" in page and "“red”" not in page
    assert not Iteration.objects.exists()


def test_advanced_detection_training_keeps_a_budget_within_the_limits(client_for, detection, users):
    red = TagFactory(project=detection, name="red")
    add_boxed_images(detection, [red], 5)
    client = client_for(users["admin"])
    response = post_train(client, detection, training_type="advanced", budget_minutes=100000)
    assert response.status_code == 422
    assert "The training budget must be between 1 and" in response.content.decode()

    assert (
        post_train(client, detection, training_type="advanced", budget_minutes=2).status_code == 302
    )
    assert Iteration.objects.get().budget_s == 120


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_only_admins_start_a_detection_training(client_for, detection, users, role):
    red = TagFactory(project=detection, name="red")
    add_boxed_images(detection, [red], 5)
    assert post_train(client_for(users[role]), detection).status_code == 403
    assert not Iteration.objects.exists()
