"""The native API's stored-prediction list: the tab's order, reasons, roles and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from tests.predictions.helpers import crafted_prediction
from tests.predictions.test_ranking import direction, ranked_iteration

pytestmark = pytest.mark.django_db


def url(project, iteration_id) -> str:
    return reverse("api-stored-prediction-list", args=[project.id, iteration_id])


def test_most_gain_through_the_api_is_the_tabs_order_with_reasons(
    api_client, client_for, project, users
):
    from tests.predictions.test_ranking import shown, tab

    iteration = ranked_iteration(project, accuracy=0.9, labels_per_tag=8)
    rng = np.random.default_rng(3)
    for i in range(12):
        p = float(rng.uniform(0.4, 0.99))
        crafted_prediction(
            project, iteration, [p, 1 - p], direction(i % 3) + rng.normal(0, 0.2, 64)
        )
    api_client.force_authenticate(users["reviewer"])
    response = api_client.get(url(project, iteration.pk), {"page_size": 5})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["page"] == 1 and body["has_more"] is True
    rows = body["results"]
    assert len(rows) == 5
    tab_rows = shown(tab(client_for(users["reviewer"]), project, iteration))
    assert [(r["image_id"], r["reason"]) for r in rows] == tab_rows[:5]
    assert all(r["reason"] for r in rows)
    second = api_client.get(url(project, iteration.pk), {"page_size": 5, "page": 2}).json()
    assert [r["image_id"] for r in second["results"]] == [i for i, _ in tab_rows[5:10]]


def test_stored_predictions_are_for_reviewers_and_bad_queries_answer_400(
    api_client, project, users
):
    iteration = ranked_iteration(project, accuracy=0.9)
    api_client.force_authenticate(users["annotator"])
    assert api_client.get(url(project, iteration.pk)).status_code == 403
    api_client.force_authenticate(users["non_member"])
    assert api_client.get(url(project, iteration.pk)).status_code == 404
    api_client.force_authenticate(users["reviewer"])
    too_big = api_client.get(url(project, 2**70))
    assert too_big.status_code == 404 and too_big.json()["code"]
    bad_sort = api_client.get(url(project, iteration.pk), {"sort": "best"})
    assert bad_sort.status_code == 400 and "sort" in bad_sort.content.decode()
    bad_tag = api_client.get(url(project, iteration.pk), {"sort": "lowest", "tag": "9" * 30})
    assert bad_tag.status_code == 400
