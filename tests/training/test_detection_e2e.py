"""A tiny detection project trains end to end through a real Celery worker on Redis."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage

from labeling.models import Project
from tests.factories import TagFactory
from tests.training.detection_data import add_boxed_images, boxed_picture
from tests.worker import wait_for
from training.ml.detection import DetectorPredictor, load_detector_artifact
from training.ml.detection_metrics import box_iou, evaluate_detections, precision_recall_at
from training.models import Iteration, IterationScore


def test_coloured_squares_train_to_a_completed_detector_with_metrics(
    celery_worker_redis, client_for, project, users, settings
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A small input and six epochs keep this short; the budget is generous because the two
    # cores are shared (training on these 18 images took 80 s at a load average of 10).
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 240
    settings.LOUPE_DETECTION_MAX_EPOCHS = 6
    settings.LOUPE_DETECTION_IMAGE_SIZE_PX = 96
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    red = TagFactory(project=project, name="red")
    blue = TagFactory(project=project, name="blue")
    add_boxed_images(project, [red, blue], 8, negatives=2)
    client = client_for(users["admin"])

    response = client.post(reverse("training:train", args=[project.id]), {"training_type": "quick"})

    assert response.status_code == 302
    iteration = Iteration.objects.get(project=project)
    wait_for(
        lambda: Iteration.objects.filter(
            pk=iteration.pk, status__in=["completed", "failed"]
        ).exists(),
        timeout_s=400,
        what="the detection iteration to finish",
    )
    iteration.refresh_from_db()
    assert iteration.status == "completed", iteration.failure_message
    assert iteration.budget_s == 240 and iteration.progress_fraction == 1.0
    assert iteration.metrics["epochs"] == 6
    assert {"training_s", "metrics_s", "total_s"} <= set(iteration.timings)

    # Held-out rows: one per held-out image (20% of each stratum), ground truth and detections.
    scores = list(IterationScore.objects.filter(iteration=iteration).select_related())
    assert len(scores) == 2 + 2 == iteration.metrics["holdout_count"]
    ground_truth = [[tuple(b) for b in s.iteration_image.boxes] for s in scores]
    detections = [[tuple(d) for d in s.detections] for s in scores]
    for row in detections:
        assert [d[1] for d in row] == sorted((d[1] for d in row), reverse=True)
        assert all(0 <= d[0] < 2 and 0 < d[1] <= 1 for d in row)

    metrics = iteration.metrics
    assert metrics["kind"] == "detection" and metrics["image_count"] == 18
    assert [tag["name"] for tag in metrics["per_tag"]] == ["red", "blue"]
    assert [tag["boxes"] for tag in metrics["per_tag"]] == [8, 8]
    # The stored figures are exactly the metrics module's on the stored held-out numbers.
    expected = evaluate_detections(ground_truth, detections, num_tags=2)
    assert metrics["map50"] == expected.map50 and metrics["map_50_95"] == expected.map
    assert [tag["ap50"] for tag in metrics["per_tag"]] == list(expected.ap50)
    counts = precision_recall_at(
        ground_truth, detections, num_tags=2, probability_threshold=0.5, overlap_threshold=0.5
    )
    assert [tag["recall"] for tag in metrics["per_tag"]] == [c.recall for c in counts]
    # Solid squares on noise: six epochs find most of them (mAP@0.5 was 1.0 when measured).
    assert metrics["map50"] >= 0.5, metrics

    # The artifact is a detector the prediction path loads: boxes after NMS, highest first.
    assert iteration.artifact.name == f"iterations/{iteration.pk}/model.pt"
    with default_storage.open(iteration.artifact.name, "rb") as handle:
        predictor = DetectorPredictor(load_detector_artifact(io.BytesIO(handle.read())))
    content, truth = boxed_picture([(1, 20, 10, 26)], seed=4242)
    found = predictor.predict([PILImage.open(io.BytesIO(content))])[0]
    assert found and [d[1] for d in found] == sorted((d[1] for d in found), reverse=True)
    assert found[0][0] == truth[0][0]  # the blue square, found as the most probable box
    assert box_iou(np.array([found[0][2:]]), np.array([truth[0][1:]]))[0, 0] >= 0.5

    page = client.get(reverse("training:iteration-performance", args=[project.id, iteration.id]))
    assert page.status_code == 200
    assert b'id="detection-performance-data"' in page.content
