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
    assert body["count"] == 12 and body["next_cursor"]
    rows = body["results"]
    assert len(rows) == 5
    tab_rows = shown(tab(client_for(users["reviewer"]), project, iteration))
    assert [(r["image_id"], r["reason"]) for r in rows] == tab_rows[:5]
    assert all(r["reason"] for r in rows)
    second = api_client.get(body["next"]).json()
    assert [r["image_id"] for r in second["results"]] == [i for i, _ in tab_rows[5:10]]
    third = api_client.get(url(project, iteration.pk), {"after": second["next_cursor"]}).json()
    assert [r["image_id"] for r in third["results"]] == [i for i, _ in tab_rows[10:12]]
    assert third["next_cursor"] is None and third["next"] is None


def _walk(api_client, project, iteration, query: dict, *, between=None) -> list[list[int]]:
    """Every page's prediction ids, following `next_cursor`; `between(page)` runs after each."""
    pages, after = [], None
    while True:
        params = {**query, **({"after": after} if after else {})}
        body = api_client.get(url(project, iteration.pk), params).json()
        assert "results" in body, body
        pages.append([row["id"] for row in body["results"]])
        if between:
            between(pages[-1])
        after = body["next_cursor"]
        if after is None:
            return pages


@pytest.mark.parametrize("sort", ["gain", "newest", "lowest", "highest"])
def test_a_walk_through_the_pages_skips_and_repeats_nothing_while_rows_are_reviewed(
    api_client, project, users, sort
):
    from predictions.models import Prediction
    from predictions.services.triage import dismiss_predictions

    iteration = ranked_iteration(project, accuracy=0.9, labels_per_tag=8)
    rng = np.random.default_rng(5)
    for i in range(23):
        p = round(float(rng.uniform(0.3, 0.99)), 2)  # repeated probabilities: ties to break
        crafted_prediction(
            project, iteration, [p, 1 - p], direction(i % 4) + rng.normal(0, 0.2, 64)
        )
    query = {"sort": sort, "page_size": 4}
    if sort in ("lowest", "highest"):
        query["tag"] = iteration.tags.get(index=0).tag_id
    api_client.force_authenticate(users["reviewer"])
    untouched = _walk(api_client, project, iteration, query)
    order = [pk for page in untouched for pk in page]
    assert len(order) == len(set(order)) == 23

    # A reviewer dismisses the first row of every page before asking for the next: the rows
    # that stayed open come in the same order, none twice, none left out (page numbers would
    # have skipped one row a page).
    gone: list[int] = []

    def review(page: list[int]) -> None:
        if page:
            image_id = Prediction.objects.get(pk=page[0]).image_id
            dismiss_predictions(project=project, image_ids=[image_id], by=users["reviewer"])
            gone.append(page[0])

    walked = [
        pk for page in _walk(api_client, project, iteration, query, between=review) for pk in page
    ]
    assert len(walked) == len(set(walked)) == 23
    assert walked == order
    assert len(gone) == 6


def test_a_most_gain_walk_goes_on_after_its_last_row_when_the_snapshot_is_gone(
    api_client, project, users
):
    from django.core.cache import cache

    iteration = ranked_iteration(project, accuracy=0.9, labels_per_tag=8)
    rng = np.random.default_rng(8)
    for i in range(10):
        p = float(rng.uniform(0.4, 0.99))
        crafted_prediction(
            project, iteration, [p, 1 - p], direction(i % 3) + rng.normal(0, 0.2, 64)
        )
    api_client.force_authenticate(users["reviewer"])
    first = api_client.get(url(project, iteration.pk), {"page_size": 4}).json()
    cache.clear()  # expired, or another web process's cache
    second = api_client.get(
        url(project, iteration.pk), {"page_size": 4, "after": first["next_cursor"]}
    ).json()
    rest = api_client.get(url(project, iteration.pk), {"page_size": 10}).json()
    everything = [row["id"] for row in rest["results"]]
    assert [row["id"] for row in second["results"]] == everything[4:8]


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("gain", "n:12"),  # another sort's
        ("newest", "n:x"),
        ("newest", "g:abc:1:2"),
        ("lowest", "p:0.5"),
        ("lowest", "p:nan:3"),
        ("highest", "p:nan-ish:3"),
        ("gain", "g:abc:one:2"),
        ("gain", "g:abc:1"),
        ("gain", "g:abc:-1:2"),  # a negative position
        ("newest", "n:-5"),
        ("newest", "n:" + "9" * 30),
        ("newest", "n:" + "9" * 19),  # past the largest id the database holds
        ("gain", "garbage"),
    ],
)
def test_a_cursor_the_list_did_not_give_answers_400(api_client, project, users, sort, cursor):
    iteration = ranked_iteration(project, accuracy=0.9)
    crafted_prediction(project, iteration, [0.6, 0.4])
    api_client.force_authenticate(users["reviewer"])
    query = {"sort": sort, "after": cursor}
    if sort in ("lowest", "highest"):
        query["tag"] = iteration.tags.get(index=0).tag_id
    response = api_client.get(url(project, iteration.pk), query)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "bad_cursor"
    assert "cursor" in response.json()["message"]


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
