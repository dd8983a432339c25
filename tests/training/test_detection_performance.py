"""The detection performance page, its stored figures, and detection training's failures."""

from __future__ import annotations

import json

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from labeling.models import Project
from tests.factories import TagFactory
from tests.training.detection_data import (
    CRAFTED_ROWS,
    CRAFTED_TAGS,
    add_boxed_images,
    make_detection_iteration,
)
from training.ml.detection_metrics import evaluate_detections, precision_recall_at
from training.models import Iteration
from training.services.iterations import start_iteration
from training.tasks import run_iteration

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(project):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    return project


def crafted_truth():
    return (
        [[tuple(b) for b in gt] for gt, _ in CRAFTED_ROWS],
        [[tuple(d) for d in dets] for _, dets in CRAFTED_ROWS],
    )


def performance_url(project, iteration):
    return reverse("training:iteration-performance", args=[project.id, iteration.id])


def test_page_shows_per_tag_figures_at_the_saved_threshold_and_embeds_boxes(
    client_for, detection, users
):
    iteration = make_detection_iteration(
        detection, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS, suggested_threshold=0.4
    )

    response = client_for(users["annotator"]).get(performance_url(detection, iteration))

    assert response.status_code == 200
    assert "training/performance_detection.html" in [t.name for t in response.templates]
    ground_truth, detections = crafted_truth()
    counts = precision_recall_at(
        ground_truth, detections, num_tags=2, probability_threshold=0.4, overlap_threshold=0.5
    )
    figures = response.context["figures"]
    assert [t["precision"] for t in figures["per_tag"]] == [c.precision for c in counts]
    assert [t["recall"] for t in figures["per_tag"]] == [c.recall for c in counts]
    ap = evaluate_detections(ground_truth, detections, num_tags=2)
    assert figures["map50"] == ap.map50 and figures["map_50_95"] == ap.map
    assert [t["boxes"] for t in figures["per_tag"]] == [4, 3]
    page = response.content.decode()
    assert 'data-testid="overlap"' in page and 'min="0.1" max="0.9"' in page
    assert f"{ap.map50:.3f}" in page

    data = json.loads(
        page.split('id="detection-performance-data" type="application/json">')[1].split(
            "</script>"
        )[0]
    )
    assert [image["gt"] for image in data["images"]] == [gt for gt, _ in CRAFTED_ROWS]
    assert [image["dets"] for image in data["images"]] == [dets for _, dets in CRAFTED_ROWS]
    first = data["images"][0]["id"]
    assert data["boxes_url"].replace(data["id_placeholder"], str(first)) == reverse(
        "labeling:image-boxes", args=[detection.id, first]
    )
    assert data["threshold"] == 0.4 and data["overlap"] == 0.5
    assert not response.context["can_save"]  # only admins save the threshold


def test_page_queries_do_not_grow_with_held_out_images(
    client_for, detection, users, django_assert_max_num_queries
):
    small = make_detection_iteration(detection, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS[:2])
    large = make_detection_iteration(detection, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS * 8, number=2)
    client = client_for(users["admin"])
    client.get(performance_url(detection, small))  # warm the session and content types

    with django_assert_max_num_queries(12) as small_queries:
        client.get(performance_url(detection, small))
    with django_assert_max_num_queries(len(small_queries)):
        assert client.get(performance_url(detection, large)).status_code == 200


def test_non_members_get_404_on_a_detection_iteration(client_for, detection, users):
    iteration = make_detection_iteration(detection, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS)
    response = client_for(users["non_member"]).get(performance_url(detection, iteration))
    assert response.status_code == 404


def test_a_failed_detection_iteration_shows_its_reason(client_for, detection, users):
    iteration = make_detection_iteration(
        detection,
        tags=CRAFTED_TAGS,
        rows=[],
        status="failed",
        failure_reason="budget_not_enough",
        failure_message="The budget ran out.",
    )
    response = client_for(users["reviewer"]).get(performance_url(detection, iteration))
    assert response.status_code == 200
    assert "Budget not enough: The budget ran out." in response.content.decode()


def test_an_unreadable_image_fails_detection_training_with_dataset_corrupt(detection, users):
    red = TagFactory(project=detection, name="red")
    images = add_boxed_images(detection, [red], 5)
    broken = images[2]
    broken.original_name = "street-scene.png"
    broken.save()
    with default_storage.open(broken.file.name, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n not a picture any more")
    iteration = start_iteration(project=detection, by=users["admin"])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert iteration.failure_reason == "dataset_corrupt"
    assert "“street-scene.png”" in iteration.failure_message
    assert iteration.lease_expires is None and not iteration.artifact


def test_a_budget_too_short_for_one_epoch_fails_with_budget_not_enough(detection, users, settings):
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 1
    red = TagFactory(project=detection, name="red")
    add_boxed_images(detection, [red], 6)
    iteration = start_iteration(project=detection, by=users["admin"])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert iteration.failure_reason == "budget_not_enough"
    assert "The budget of 1 seconds ran out" in iteration.failure_message
    assert "larger budget with advanced training" in iteration.failure_message
    assert not iteration.scores.exists()
