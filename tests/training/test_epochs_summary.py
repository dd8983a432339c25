"""An advanced iteration's page says how many epochs ran, which one was kept, the held-out loss
per epoch, and when the last epoch was the best (the budget bought too few epochs)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db

ROWS = [([0], [0.9, 0.1]), ([1], [0.2, 0.8])]


def page(client, project, iteration):
    url = reverse("training:iteration-performance", args=[project.id, iteration.id])
    return client.get(url).content.decode()


def test_a_run_whose_last_epoch_was_best_says_it_is_still_improving(client_for, project, users):
    metrics = {"epochs": 5, "best_epoch": 5, "holdout_losses": [0.9, 0.7, 0.6, 0.5, 0.45, 0.4]}
    climbing = make_iteration(project, rows=ROWS, training_type="advanced", metrics=metrics)

    text = page(client_for(users["annotator"]), project, climbing)

    assert "5 epochs of fine-tuning; the best on the held-out images was epoch 5" in text
    assert "Still improving: the last epoch was the best" in text
    assert "0.9, 0.7, 0.6, 0.5, 0.45, 0.4" in text


def test_an_early_best_epoch_is_named_without_the_hint(client_for, project, users):
    metrics = {"epochs": 6, "best_epoch": 2, "holdout_losses": [0.9, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8]}
    stopped = make_iteration(project, rows=ROWS, training_type="advanced", metrics=metrics)
    quick = make_iteration(project, number=2, rows=ROWS, metrics={"epochs": 40})
    client = client_for(users["annotator"])

    text = page(client, project, stopped)

    assert "the best on the held-out images was epoch 2" in text
    assert 'data-testid="still-improving"' not in text
    assert 'data-testid="epochs-summary"' not in page(client, project, quick)
