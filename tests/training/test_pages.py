"""Performance, compare and train pages: what they show, and a query count that stays flat."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db

ROWS = [([0], [0.9, 0.1]), ([0], [0.4, 0.6]), ([1], [0.2, 0.8]), ([1], [0.3, 0.7])]


def test_performance_page_shows_figures_at_the_saved_threshold_and_embeds_scores(
    client_for, project, users
):
    iteration = make_iteration(project, rows=ROWS, suggested_threshold=0.65)
    response = client_for(users["reviewer"]).get(
        reverse("training:iteration-performance", args=[project.id, iteration.id])
    )
    assert response.status_code == 200
    figures = response.context["figures"]
    # At 0.65: cat predicted for image 0 only (1 of 2 cats), dog for images 2 and 3 (2 of 2).
    assert [round(t["recall"], 3) for t in figures["per_tag"]] == [0.5, 1.0]
    assert [t["name"] for t in figures["per_tag"]] == ["cat", "dog"]
    html = response.content.decode()
    data = json.loads(html.split('id="performance-data" type="application/json">')[1].split("<")[0])
    assert data["threshold"] == 0.65 and data["multiclass"] is True
    assert [image["s"] for image in data["images"]] == [s for _, s in ROWS]
    assert [image["y"] for image in data["images"]] == [y for y, _ in ROWS]
    assert data["can_save"] is False  # reviewers may move the slider, not save it
    image_id = data["images"][0]["id"]
    assert data["tag_url"].replace(data["id_placeholder"], str(image_id)) == reverse(
        "labeling:image-tag", args=[project.id, image_id]
    )


def test_performance_page_queries_do_not_grow_with_images(client_for, project, users):
    small = make_iteration(project, number=1, rows=ROWS)
    large = make_iteration(project, number=2, rows=ROWS * 10)
    client = client_for(users["admin"])
    counts = []
    for iteration in (small, large):
        url = reverse("training:iteration-performance", args=[project.id, iteration.id])
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_iteration_list_queries_do_not_grow_with_iterations(client_for, project, users):
    client = client_for(users["admin"])
    url = reverse("training:iteration-list", args=[project.id])
    make_iteration(project, number=1)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for number in range(2, 8):
        make_iteration(project, number=number)
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(few) == len(many)


def test_compare_shows_two_iterations_tag_by_tag_at_their_saved_thresholds(
    client_for, project, users
):
    # At 0.5, ROWS give cat 1 of 1 predicted right, dog 2 of 3: precision 0.75, recall 0.75.
    first = make_iteration(project, number=1, rows=ROWS)
    # At 0.85 only image 0 is predicted (cat, right): precision 1.0, recall 0.25; owl none.
    second = make_iteration(project, number=2, tags=("cat", "owl"), rows=ROWS)
    second.suggested_threshold = 0.85
    second.save()
    response = client_for(users["annotator"]).get(
        reverse("training:iteration-compare", args=[project.id]), {"a": first.id, "b": second.id}
    )
    assert response.status_code == 200
    overall = response.context["overall"]
    assert (overall["a"]["precision"], overall["b"]["precision"]) == (0.75, 1.0)
    assert overall["change"]["precision"]["trend"] == "up"
    assert overall["change"]["recall"]["trend"] == "down"
    assert overall["change"]["ap"]["trend"] == "same"  # the same scores: AP does not move
    rows = {row["name"]: row for row in response.context["rows"]}
    assert rows["cat"]["a"]["recall"] == 0.5 and rows["cat"]["b"]["precision"] == 1.0
    assert rows["owl"]["b"]["precision"] is None  # nothing predicted at 0.85
    assert "b" not in rows["dog"] and "a" not in rows["owl"]
    assert rows["dog"]["change"]["precision"] is None
    html = response.content.decode()
    assert "not in this iteration" in html
    assert "Iteration 1 at 0.50</strong>, <strong>Iteration 2 at 0.85" in html
    assert 'class="change-up" data-trend="up" data-testid="change-precision">▲ +0.250' in html
    assert 'class="change-down" data-trend="down" data-testid="change-recall">▼ -0.500' in html


def test_train_page_shows_the_running_iteration_and_its_socket(client_for, project, users):
    iteration = make_iteration(
        project, status="training", progress_fraction=0.42, progress_phase="fold 2/5"
    )
    response = client_for(users["admin"]).get(reverse("training:train", args=[project.id]))
    html = response.content.decode()
    assert f'data-ws-path="/ws/projects/{project.id}/iterations/{iteration.id}/"' in html
    assert 'data-percent-width="42"' in html and "fold 2/5" in html
    assert "disabled" in html.split('data-testid="train-button"')[1].split(">")[0]


def test_performance_page_of_a_failed_iteration_names_the_reason_and_shows_no_figures(
    client_for, project, users
):
    iteration = make_iteration(
        project,
        status="failed",
        failure_reason="budget_not_enough",
        failure_message="The budget of 60 s ran out before the first epoch finished.",
    )
    response = client_for(users["annotator"]).get(
        reverse("training:iteration-performance", args=[project.id, iteration.id])
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="failure"' in html
    assert "Budget not enough: The budget of 60 s ran out" in html
    assert 'data-testid="performance"' not in html
