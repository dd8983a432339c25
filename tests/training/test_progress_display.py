"""What the progress card says: elapsed time, estimate, budget and epochs; the ended run's link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.training.conftest import make_iteration
from training.services.progress import iteration_state, timing_summary

pytestmark = pytest.mark.django_db


def test_state_of_a_budgeted_run_has_elapsed_time_budget_and_epochs(project):
    iteration = make_iteration(
        project,
        status="training",
        training_type="advanced",
        budget_s=600,
        started=timezone.now() - timedelta(seconds=120),
        progress_fraction=0.25,
        progress_phase="epoch 3/20",
    )
    state = iteration_state(iteration)
    assert 119 <= state["elapsed_s"] <= 125
    assert (state["budget_s"], state["epoch"], state["epochs"]) == (600, 3, 20)
    state["elapsed_s"] = 120
    assert timing_summary(state) == (
        "Elapsed 2:00 · about 6 min left · budget left 8:00 · epoch 3 of 20 planned"
    )


def test_a_quick_run_has_no_budget_and_no_estimate_too_early(project):
    iteration = make_iteration(
        project, status="training", started=timezone.now(), progress_phase="embedding 1/61"
    )
    state = iteration_state(iteration)
    assert state["budget_s"] == 0 and state["epoch"] is None
    state.update(elapsed_s=4000, fraction=0.01)
    assert timing_summary(state) == "Elapsed 1:06:40"


def test_a_queued_run_says_how_long_it_waits(project):
    state = iteration_state(make_iteration(project, status="queued"))
    assert timing_summary(state).startswith("Waiting for a worker for 0:0")


def test_train_tab_says_the_last_run_ended_and_links_to_its_performance(client_for, project, users):
    iteration = make_iteration(
        project,
        started=timezone.now() - timedelta(seconds=95),
        finished=timezone.now() - timedelta(seconds=5),
    )
    response = client_for(users["admin"]).get(reverse("training:train", args=[project.id]))
    html = response.content.decode()
    assert "Training ended just now, after 1:30" in html
    url = reverse("training:iteration-performance", args=[project.id, iteration.id])
    assert f'href="{url}" data-testid="see-performance"' in html
    assert "No training is running" not in html
