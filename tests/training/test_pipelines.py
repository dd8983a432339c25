"""One pipeline per kind of project, and failures that reach the user as named reasons only."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from labeling.models import Project
from training.ml.errors import BudgetExhausted
from training.models import Iteration
from training.services.failures import failure_for
from training.services.iterations import start_iteration
from training.services.pipelines import (
    ClassificationPipeline,
    DetectionPipeline,
    pipeline_for,
)
from training.tasks import run_iteration

pytestmark = pytest.mark.django_db


def test_the_pipeline_follows_the_project_kind(project):
    assert isinstance(pipeline_for(project), ClassificationPipeline)
    project.kind = Project.Kind.DETECTION
    assert isinstance(pipeline_for(project), DetectionPipeline)


def test_an_unexpected_error_shows_no_exception_text(project, users, build_dataset, caplog):
    build_dataset(project, {"red": 5, "green": 5})
    iteration = start_iteration(project=project, by=users["admin"])
    # A damaged snapshot row: a label index past the iteration's tags (an IndexError in training).
    iteration.images.filter(pk=iteration.images.order_by("id").first().pk).update(labels=[7])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert iteration.failure_reason == "unexpected"
    assert "IndexError" not in iteration.failure_message
    assert "worker's log" in iteration.failure_message
    assert any("IndexError" in (r.exc_text or "") for r in caplog.records)


def test_a_corrupt_image_is_named_without_the_decoder_text(project, users, build_dataset):
    build_dataset(project, {"red": 5, "green": 5})
    broken = project.images.order_by("id").first()
    with default_storage.open(broken.file.name, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n not a picture")
    iteration = start_iteration(project=project, by=users["admin"])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.failure_reason == "dataset_corrupt"
    assert f"“{broken.original_name}”" in iteration.failure_message
    assert "not a picture that can be decoded" in iteration.failure_message
    assert "Error" not in iteration.failure_message  # no UnidentifiedImageError & co.


def test_budget_failure_says_where_the_time_went(project):
    iteration = Iteration(project=project, budget_s=600)
    err = BudgetExhausted(
        "ran out", spent_s={"preparing images": 290.4, "held back for scoring": 130.0}
    )

    reason, message = failure_for(err, iteration=iteration, images=[], more_time_hint="Hint.")

    assert reason == "budget_not_enough"
    assert message.startswith("The budget of 10 minutes ran out before one pass")
    assert "290 s preparing images, 130 s held back for scoring" in message


def test_the_train_page_describes_quick_training_per_kind(client_for, project, users, settings):
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 600
    client = client_for(users["admin"])
    page = client.get(reverse("training:train", args=[project.id])).content.decode()
    assert "minutes at most" in page
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    page = client.get(reverse("training:train", args=[project.id])).content.decode()
    assert "minutes at most" not in page
    assert "for 10 minutes" in page and "fixed budget of 10 minutes" in page
