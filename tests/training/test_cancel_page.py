"""Cancel a queued or running training from the pages (the API's cancel, tests/training/api)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.training.conftest import make_iteration
from training.models import Iteration

pytestmark = pytest.mark.django_db


def cancel_url(iteration: Iteration) -> str:
    return reverse("training:iteration-cancel", args=[iteration.project_id, iteration.id])


def test_admin_cancels_a_training_from_the_iterations_list(client_for, project, users):
    iteration = make_iteration(project, status="training", metrics={})
    response = client_for(users["admin"]).post(cancel_url(iteration), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Training cancelled." in response.content.decode()
    iteration.refresh_from_db()
    assert iteration.status == "failed"
    assert iteration.failure_reason == Iteration.FailureReason.CANCELLED
    assert iteration.failure_message == f"Cancelled by {users['admin'].username}."


def test_cancel_from_the_train_tab_reloads_the_train_tab(client_for, project, users):
    iteration = make_iteration(project, status="queued", metrics={})
    client = client_for(users["admin"])
    train_url = reverse("training:train", args=[project.id])
    response = client.post(cancel_url(iteration), {"next": "train"}, HTTP_HX_REQUEST="true")
    assert response.headers["HX-Redirect"] == train_url
    page = client.get(train_url).content.decode()
    assert "Training cancelled." in page and "Cancelled by" in page
    assert 'data-testid="cancel-training"' not in page


def test_the_train_tab_offers_cancel_to_admins_only(client_for, project, users):
    make_iteration(project, status="training", metrics={})
    url = reverse("training:train", args=[project.id])
    assert 'data-testid="cancel-training"' in client_for(users["admin"]).get(url).content.decode()
    reviewer_page = client_for(users["reviewer"]).get(url).content.decode()
    assert 'data-testid="cancel-training"' not in reviewer_page


def test_a_finished_iteration_cannot_be_cancelled(client_for, project, users):
    iteration = make_iteration(project, status="completed")
    response = client_for(users["admin"]).post(cancel_url(iteration), HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "only a queued or training iteration can be cancelled" in response.content.decode()
    iteration.refresh_from_db()
    assert iteration.status == "completed"


def test_a_reviewer_cannot_cancel(client_for, project, users):
    iteration = make_iteration(project, status="training", metrics={})
    assert client_for(users["reviewer"]).post(cancel_url(iteration)).status_code == 403
    iteration.refresh_from_db()
    assert iteration.status == "training"
