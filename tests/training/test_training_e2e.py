"""A small real project trains end to end through a real Celery worker on Redis."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.worker import wait_for
from training.ml.artifact import load_artifact
from training.models import Iteration, IterationScore


def test_three_colour_tags_train_to_completed_with_sane_metrics(
    celery_worker_redis, client_for, project, users, build_dataset, settings
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    build_dataset(project, {"red": 6, "green": 6, "blue": 6})
    client = client_for(users["admin"])
    response = client.post(reverse("training:train", args=[project.id]), {"training_type": "quick"})
    assert response.status_code == 302

    iteration = Iteration.objects.get(project=project)
    wait_for(
        lambda: Iteration.objects.filter(
            pk=iteration.pk, status__in=["completed", "failed"]
        ).exists(),
        timeout_s=240,
        what="the iteration to finish",
    )
    iteration.refresh_from_db()
    assert iteration.status == "completed", iteration.failure_message
    assert iteration.attempts == 1 and iteration.lease_expires is None
    assert iteration.progress_fraction == 1.0 and iteration.started and iteration.finished

    metrics = iteration.metrics
    # Three well separated colours: cross-validated figures must be (near) perfect.
    assert metrics["precision"] >= 0.9 and metrics["recall"] >= 0.9 and metrics["map"] >= 0.9
    assert [tag["positives"] for tag in metrics["per_tag"]] == [6, 6, 6]
    assert len(metrics["confusion"]) == 4
    assert {"embedding_s", "training_s", "metrics_s", "total_s"} <= set(iteration.timings)

    scores = list(IterationScore.objects.filter(iteration=iteration))
    assert len(scores) == 18
    assert {score.fold for score in scores} <= set(range(5))
    matrix = np.array([score.scores for score in scores])
    assert matrix.shape == (18, 3) and (matrix >= 0).all() and (matrix <= 1).all()
    labels = [score.iteration_image.labels[0] for score in scores]
    assert (matrix.argmax(axis=1) == np.array(labels)).mean() >= 0.9

    assert iteration.artifact.name == f"iterations/{iteration.pk}/model.pt"
    with default_storage.open(iteration.artifact.name, "rb") as handle:
        artifact = load_artifact(io.BytesIO(handle.read()))
    assert artifact.tag_keys == ["red", "green", "blue"] and artifact.backbone == "lite0-levels"
    assert not default_storage.exists(f"{iteration.artifact.name}.tmp")

    page = client.get(reverse("training:iteration-performance", args=[project.id, iteration.id]))
    assert page.status_code == 200
    assert b'id="performance-data"' in page.content
