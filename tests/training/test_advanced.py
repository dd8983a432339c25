"""Advanced training (fine-tuning in a time budget) run by the task function in this thread."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage

from training.ml.artifact import load_artifact
from training.models import Iteration
from training.services.iterations import start_iteration
from training.tasks import run_iteration

pytestmark = pytest.mark.django_db


def test_a_budget_too_small_for_one_epoch_fails_with_budget_not_enough(
    project, users, build_dataset, settings
):
    settings.LOUPE_TRAIN_MIN_BUDGET_S = 1
    # One second for 40 images: embedding them for the linear-probe start alone takes longer
    # (about 30 images/s on this CPU), so not one epoch can finish, however warm the process is.
    build_dataset(project, {"red": 20, "green": 20})
    iteration = start_iteration(
        project=project, by=users["admin"], training_type="advanced", budget_s=1
    )

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert iteration.failure_reason == "budget_not_enough"
    assert iteration.failure_message.startswith("The budget of 1 seconds ran out")
    assert not iteration.artifact


def test_advanced_training_completes_with_held_out_scores_and_tuned_weights(
    project, users, build_dataset, settings
):
    settings.LOUPE_TRAIN_MIN_BUDGET_S = 1
    build_dataset(project, {"red": 5, "green": 5})
    iteration = start_iteration(
        project=project, by=users["admin"], training_type="advanced", budget_s=25
    )

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.COMPLETED, iteration.failure_message
    scores = list(iteration.scores.all())
    # The held-out split only: about a fifth of the 10 images, every one with a score per tag.
    assert 2 <= len(scores) < 10 == iteration.image_count
    assert all(score.fold == -1 and len(score.scores) == 2 for score in scores)
    assert iteration.metrics["scored_count"] == len(scores)
    assert iteration.metrics["epochs"] >= 1
    with default_storage.open(iteration.artifact.name, "rb") as handle:
        artifact = load_artifact(io.BytesIO(handle.read()))
    assert artifact.backbone_state  # fine-tuned weights travel with the model
    assert artifact.head_weight.shape[0] == 3  # two tags + the background class
