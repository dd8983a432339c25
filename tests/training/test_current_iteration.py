"""One notion of "the current iteration" (issue 11, item 7): the default, else the latest
completed; the Performance tab, the Predictions tab, Quick test and Suggest tags all use it."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from tests.training.conftest import make_iteration
from training.services.publishing import current_iteration

pytestmark = pytest.mark.django_db


def test_the_default_iteration_is_current_even_when_a_newer_one_completed(project):
    default = make_iteration(project, number=1, is_default=True)
    make_iteration(project, number=2)
    assert current_iteration(project) == default


def test_without_a_default_the_latest_completed_iteration_is_current(project):
    make_iteration(project, number=1)
    second = make_iteration(project, number=2)
    make_iteration(project, number=3, status="failed")
    make_iteration(project, number=4, status="queued")
    assert current_iteration(project) == second


def test_with_model_skips_iterations_without_a_model_file(project):
    with_file = make_iteration(project, number=1)
    with_file.artifact.save("model.pt", ContentFile(b"x"), save=True)
    make_iteration(project, number=2, is_default=True)  # no model file
    assert current_iteration(project, with_model=True) == with_file
    assert current_iteration(project).number == 2


def test_a_project_without_a_completed_iteration_has_no_current_one(project):
    make_iteration(project, number=1, status="failed")
    assert current_iteration(project) is None


def test_the_performance_tab_opens_the_current_iteration(client_for, project, users):
    make_iteration(project, number=1)
    second = make_iteration(project, number=2)
    response = client_for(users["annotator"]).get(
        reverse("training:performance", args=[project.id])
    )
    assert response.url == reverse("training:iteration-performance", args=[project.id, second.id])
