"""Predictions tab, Quick test and Suggest tags preselect the current iteration (the default,
else the latest completed: training.services.publishing.current_iteration) and name it."""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from predictions.services.suggestions import request_suggestions
from tests.factories import TagFactory
from tests.predictions.helpers import crafted_prediction
from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db


def trained(project, number: int, **fields):
    iteration = make_iteration(project, number=number, tags=("cat", "dog"), **fields)
    for it_tag, tag in zip(
        iteration.tags.order_by("index"), project.tags.order_by("id"), strict=True
    ):
        it_tag.tag = tag
        it_tag.image_count = 30
        it_tag.save()
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    return iteration


@pytest.fixture
def two(project):
    """Iteration 1 is the default and has nothing open; Iteration 2 is newer and has work."""
    TagFactory(project=project, name="cat")
    TagFactory(project=project, name="dog")
    first = trained(project, 1, is_default=True)
    second = trained(project, 2)
    crafted_prediction(project, second, [0.6, 0.4])
    return first, second


def selected(html: str, select_name: str) -> str:
    block = html.split(f'name="{select_name}"', 1)[1].split("</select>", 1)[0]
    match = re.search(r'<option value="(\d+)"[^>]*selected', block)
    return match.group(1) if match else ""


def test_predictions_tab_opens_the_default_iteration_and_points_at_open_work(
    client_for, project, users, two
):
    first, second = two
    client = client_for(users["reviewer"])
    html = client.get(reverse("predictions:prediction-list", args=[project.id])).content.decode()
    assert selected(html, "iteration") == str(first.id)
    assert "Iteration 1</strong>, the project's default iteration" in html
    # Nothing open here: the tab names the iteration that has open predictions.
    assert f'href="?iteration={second.id}" data-testid="open-elsewhere"' in html
    assert "Suggest tags for untagged images with Iteration 1" in html

    # The dropdown still chooses any iteration, and the page says which is current.
    html = client.get(
        reverse("predictions:prediction-list", args=[project.id]), {"iteration": second.id}
    ).content.decode()
    assert selected(html, "iteration") == str(second.id)
    assert "the current iteration is <strong" in html
    assert html.count('data-testid="prediction-thumb"') == 1


def test_predictions_tab_without_a_default_opens_the_latest_completed(
    client_for, project, users, two
):
    first, second = two
    first.is_default = False
    first.save(update_fields=["is_default"])
    html = (
        client_for(users["reviewer"])
        .get(reverse("predictions:prediction-list", args=[project.id]))
        .content.decode()
    )
    assert selected(html, "iteration") == str(second.id)
    assert "the latest completed iteration (no default is set)" in html


def test_quick_test_preselects_the_default_iteration_and_says_so(client_for, project, users, two):
    first, _ = two
    html = (
        client_for(users["annotator"])
        .get(reverse("predictions:quick-test", args=[project.id]))
        .content.decode()
    )
    assert selected(html, "iteration") == str(first.id)
    assert "Iteration 1 (default)" in html
    assert 'data-testid="quick-test-current"' in html and "default iteration" in html


def test_suggest_tags_uses_the_latest_completed_iteration_without_a_default(
    client_for, project, users
):
    TagFactory(project=project, name="cat")
    TagFactory(project=project, name="dog")
    trained(project, 1)
    second = trained(project, 2)
    assert request_suggestions(project=project, by=users["reviewer"]) == second
    client = client_for(users["reviewer"])
    response = client.post(reverse("predictions:suggestions-run", args=[project.id]))
    page = client.get(response.url).content.decode()
    assert "Iteration 2 is suggesting tags" in page


def test_suggest_tags_uses_the_default_iteration(project, users, two):
    first, _ = two
    assert request_suggestions(project=project, by=users["reviewer"]) == first
