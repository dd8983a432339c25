"""Detection training and its budget: the Train page's estimate beforehand, and a failure that
says where the time went when not one pass fits."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Project
from tests.factories import TagFactory
from tests.training.detection_data import add_boxed_images
from training.models import Iteration
from training.services.iterations import start_iteration
from training.services.pipelines import DetectionPipeline
from training.tasks import run_iteration

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(project):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    return project


def test_a_budget_with_no_room_for_one_pass_fails_saying_where_it_went(detection, users, settings):
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 1
    settings.LOUPE_DETECTION_IMAGE_SIZE_PX = 96
    red = TagFactory(project=detection, name="red")
    add_boxed_images(detection, [red], 6)
    iteration = start_iteration(project=detection, by=users["admin"])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert iteration.failure_reason == "budget_not_enough"
    message = iteration.failure_message
    assert message.startswith("The budget of 1 seconds ran out before one pass")
    assert " s preparing images" in message and " s held back for scoring" in message


def test_the_estimate_says_when_the_budget_is_enough_and_when_not():
    pipeline = DetectionPipeline()

    roomy = pipeline.estimate_for(400, 600)
    tight = pipeline.estimate_for(400, 60)

    assert roomy.enough and roomy.message.startswith("About 2 minutes to prepare 400 images")
    assert not tight.enough
    assert "not enough to prepare them all, so training starts on about 72 of them" in (
        tight.message
    )


def test_the_estimate_follows_the_cost_the_last_training_measured(detection, users):
    Iteration.objects.create(
        project=detection,
        number=1,
        name="Iteration 1",
        status=Iteration.Status.COMPLETED,
        backbone="lite0",
        timings={"prepare_per_image_s": 1.5},
        created_by=users["admin"],
    )

    estimate = DetectionPipeline().estimate_for(400, 600)

    assert not estimate.enough  # 320 images at 1.5 s: 8 minutes of preparation alone
    assert estimate.message.startswith(
        "About 13 minutes to prepare 400 images: the 10-minute budget is not enough"
    )


def test_the_train_page_shows_the_estimate(client_for, detection, users, settings):
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 600
    red = TagFactory(project=detection, name="red")
    add_boxed_images(detection, [red], 6, negatives=2)

    page = client_for(users["admin"]).get(reverse("training:train", args=[detection.id]))

    text = page.content.decode()
    assert 'data-testid="budget-estimate"' in text
    assert "About 1 minute to prepare 8 images" in text


def test_the_performance_page_says_when_training_used_part_of_the_images(
    client_for, detection, users
):
    from tests.training.detection_data import make_detection_iteration

    rows = [([[0, 0.1, 0.1, 0.3, 0.3]], [[0, 0.9, 0.1, 0.1, 0.3, 0.3]])] * 2
    partial = make_detection_iteration(detection, tags=["red"], rows=rows)
    partial.metrics = {**partial.metrics, "trained_images": 250, "training_images": 320}
    partial.save(update_fields=["metrics"])
    whole = make_detection_iteration(detection, tags=["red"], rows=rows, number=2)
    whole.metrics = {**whole.metrics, "trained_images": 320, "training_images": 320}
    whole.save(update_fields=["metrics"])
    client = client_for(users["annotator"])

    def page(iteration):
        url = reverse("training:iteration-performance", args=[detection.id, iteration.id])
        return client.get(url).content.decode()

    assert "Trained on 250 of the 320 training images" in page(partial)
    assert 'data-testid="partial-training"' not in page(whole)
