"""A detection iteration's page says how many epochs ran, which detector was kept, the training
loss per epoch, and when the budget ended a run still improving; older iterations without the
per-epoch figures still render."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from labeling.models import Project
from tests.training.detection_data import CRAFTED_ROWS, CRAFTED_TAGS, make_detection_iteration
from training.ml.detection import DetectorResult
from training.services.detection import _epochs_summary

pytestmark = pytest.mark.django_db


@pytest.fixture
def detection(project):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    return project


def page(client, project, iteration) -> str:
    url = reverse("training:iteration-performance", args=[project.id, iteration.id])
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def with_metrics(project, number: int, **extra: object):
    iteration = make_detection_iteration(
        project, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS, number=number, training_type="advanced"
    )
    iteration.metrics.update(extra)
    iteration.save(update_fields=["metrics"])
    return iteration


def result(losses: list[float]) -> DetectorResult:
    empty = np.zeros(0, dtype=np.int64)
    return DetectorResult(
        state={},
        holdout_index=empty,
        holdout_detections=[],
        epochs=len(losses),
        best_epoch=len(losses),
        epoch_losses=tuple(losses),
    )


def test_a_detector_the_budget_stopped_while_improving_says_so(client_for, detection, users):
    summary = _epochs_summary(result([2.7, 1.9, 1.4, 1.1]), max_epochs=200)
    iteration = with_metrics(detection, 1, epochs=4, **summary)

    text = page(client_for(users["annotator"]), detection, iteration)

    assert summary == {
        "best_epoch": 4,
        "epoch_losses": [2.7, 1.9, 1.4, 1.1],
        "still_improving": True,
    }
    assert 'data-testid="epochs-summary"' in text
    assert (
        "4 epochs of detector training; the detector kept is the one after the last epoch" in text
    )
    assert 'data-testid="still-improving"' in text
    assert "Training loss per epoch: 2.7, 1.9, 1.4, 1.1" in text
    assert "linear-probe" not in text


def test_no_notice_when_the_loss_had_levelled_off_or_the_epoch_cap_ended_training(
    client_for, detection, users
):
    levelled = _epochs_summary(result([2.7, 1.1, 1.2]), max_epochs=200)
    capped = _epochs_summary(result([2.7, 1.9, 1.4]), max_epochs=3)
    client = client_for(users["annotator"])

    for number, summary in enumerate((levelled, capped), start=1):
        assert summary["still_improving"] is False
        text = page(client, detection, with_metrics(detection, number, epochs=3, **summary))
        assert "3 epochs of detector training" in text
        assert 'data-testid="still-improving"' not in text


def test_an_older_iteration_without_per_epoch_figures_still_renders(client_for, detection, users):
    older = with_metrics(detection, 1, epochs=7, final_loss=0.8)
    before_epochs = make_detection_iteration(
        detection, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS, number=2
    )
    client = client_for(users["annotator"])

    text = page(client, detection, older)
    assert "7 epochs of detector training" in text
    assert 'data-testid="still-improving"' not in text
    assert 'data-testid="epoch-losses"' not in text
    assert 'data-testid="performance"' in text
    assert 'data-testid="epochs-summary"' not in page(client, detection, before_epochs)
