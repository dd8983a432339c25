"""The REST API of performance: figures at a threshold (and overlap), per-image results.

Crafted stored scores whose figures are worked out by hand, and the same figures the
performance page renders.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Project
from tests.training.conftest import make_iteration
from tests.training.detection_data import make_detection_iteration

pytestmark = pytest.mark.django_db

# (true tag indexes, scores of cat and dog): the third image is a cat scored 0.6 dog.
ROWS = [([0], [0.9, 0.1]), ([1], [0.3, 0.7]), ([0], [0.4, 0.6])]


def url(iteration, suffix: str = "") -> str:
    return f"/api/projects/{iteration.project_id}/iterations/{iteration.pk}/performance/{suffix}"


def by_name(body) -> dict:
    return {tag["name"]: tag for tag in body["per_tag"]}


def test_classification_figures_move_with_the_threshold(api_client, project, users):
    iteration = make_iteration(project, rows=ROWS)
    api_client.force_authenticate(users["annotator"])
    at_half = api_client.get(url(iteration), {"threshold": 0.5})
    assert at_half.status_code == 200, at_half.content
    body = at_half.json()
    assert body["kind"] == "classification" and body["threshold"] == 0.5
    assert body["overlap"] is None
    tags = by_name(body)
    # Multiclass at 0.5: cat predicted once (right), dog twice (once wrong).
    assert (tags["cat"]["precision"], tags["cat"]["recall"]) == (1.0, 0.5)
    assert (tags["dog"]["precision"], tags["dog"]["recall"]) == (0.5, 1.0)
    assert tags["cat"]["ap"] is not None and tags["cat"]["roc_auc"] is not None
    at_065 = by_name(api_client.get(url(iteration), {"threshold": 0.65}).json())
    # 0.6 no longer predicts dog for the third image: dog's precision rises to 1.
    assert (at_065["dog"]["precision"], at_065["dog"]["recall"]) == (1.0, 1.0)


def test_figures_at_the_saved_threshold_are_the_pages(api_client, client_for, project, users):
    iteration = make_iteration(project, rows=ROWS, suggested_threshold=0.65)
    api_client.force_authenticate(users["reviewer"])
    body = api_client.get(url(iteration)).json()
    assert body["threshold"] == 0.65
    page = client_for(users["reviewer"]).get(
        reverse("training:iteration-performance", args=[project.pk, iteration.pk])
    )
    figures = page.context["figures"]
    assert body["precision"] == figures["precision"] and body["recall"] == figures["recall"]
    assert body["map"] == figures["map"]
    assert [(t["name"], t["precision"], t["recall"], t["ap"]) for t in body["per_tag"]] == [
        (t["name"], t["precision"], t["recall"], t["ap"]) for t in figures["per_tag"]
    ]


def test_per_image_results_and_mispredicted_images(api_client, project, users):
    iteration = make_iteration(project, rows=ROWS)
    image_ids = list(
        iteration.images.order_by("id").values_list("image_id", flat=True)
    )  # in ROWS order
    api_client.force_authenticate(users["annotator"])
    everything = api_client.get(url(iteration, "images/"), {"threshold": 0.5}).json()
    assert everything["count"] == 3
    rows = {row["image_id"]: row for row in everything["results"]}
    assert [row["image_id"] for row in everything["results"]] == sorted(image_ids, reverse=True)
    third = rows[image_ids[2]]
    assert third["is_mispredicted"] is True
    assert third["truth"] == [{"tag_id": None, "name": "cat"}]
    assert [(p["name"], p["probability"], p["is_predicted"]) for p in third["predictions"]] == [
        ("dog", 0.6, True),
        ("cat", 0.4, False),
    ]
    assert rows[image_ids[0]]["is_mispredicted"] is False
    wrong = api_client.get(
        url(iteration, "images/"), {"threshold": 0.5, "mispredicted": "true"}
    ).json()
    assert [row["image_id"] for row in wrong["results"]] == [image_ids[2]]
    # The same set the performance page outlines and the editor walks.
    from training.services.mispredicted import mispredicted_image_ids

    assert [row["image_id"] for row in wrong["results"]] == mispredicted_image_ids(iteration, 0.5)
    paged = api_client.get(url(iteration, "images/"), {"page_size": 2}).json()
    assert len(paged["results"]) == 2 and paged["next_cursor"] == paged["results"][-1]["image_id"]
    rest = api_client.get(paged["next"]).json()
    assert [row["image_id"] for row in rest["results"]] == [min(image_ids)]


def test_detection_figures_at_probability_and_overlap_thresholds(api_client, project, users):
    project.kind = Project.Kind.DETECTION
    project.save(update_fields=["kind"])
    box = [0.1, 0.1, 0.3, 0.3]
    iteration = make_detection_iteration(
        project,
        tags=["cat"],
        rows=[
            # IoU 0.53 with its true box: found at overlap 0.5, not at 0.6.
            ([[0, *box]], [[0, 0.9, 0.15, 0.15, 0.3, 0.3]]),
            # A confident box in the wrong place: one wrong, one missed.
            ([[0, 0.5, 0.5, 0.3, 0.3]], [[0, 0.6, 0.0, 0.0, 0.2, 0.2]]),
        ],
    )
    api_client.force_authenticate(users["annotator"])
    body = api_client.get(url(iteration), {"threshold": 0.5, "overlap": 0.5}).json()
    assert body["kind"] == "detection" and body["overlap"] == 0.5
    assert (body["precision"], body["recall"]) == (0.5, 0.5)
    assert body["per_tag"][0]["ap_50_95"] is not None
    stricter = api_client.get(url(iteration), {"threshold": 0.7, "overlap": 0.5}).json()
    assert (stricter["precision"], stricter["recall"]) == (1.0, 0.5)
    tighter = api_client.get(url(iteration), {"threshold": 0.5, "overlap": 0.6}).json()
    assert (tighter["precision"], tighter["recall"]) == (0.0, 0.0)
    results = api_client.get(url(iteration, "images/"), {"threshold": 0.5}).json()["results"]
    flags = sorted((row["is_mispredicted"], row["missed"], row["wrong"]) for row in results)
    assert flags == [(False, 0, 0), (True, 1, 1)]
    found = next(row for row in results if not row["is_mispredicted"])
    assert found["truth"][0]["left"] == 0.1 and found["predictions"][0]["probability"] == 0.9


def test_bad_thresholds_and_unfinished_iterations_are_refused(api_client, project, users):
    iteration = make_iteration(project, rows=ROWS)
    api_client.force_authenticate(users["admin"])
    bad = api_client.get(url(iteration), {"threshold": "1.5"})
    assert bad.status_code == 400 and bad.json()["field"] == "threshold"
    assert api_client.get(url(iteration), {"overlap": "0.95"}).status_code == 400
    assert api_client.get(url(iteration, "images/"), {"after": "x"}).status_code == 400
    queued = make_iteration(project, number=2, status="queued")
    refused = api_client.get(url(queued))
    assert refused.status_code == 422 and "completed" in refused.json()["message"]
    assert api_client.get(url(queued, "images/")).status_code == 422


def test_compare_two_iterations_as_the_compare_page(api_client, client_for, project, users):
    first = make_iteration(project, number=1, rows=ROWS)
    second = make_iteration(project, number=2, rows=[([0], [0.9, 0.1]), ([1], [0.2, 0.8])])
    api_client.force_authenticate(users["annotator"])
    answer = api_client.get(url_compare(project), {"a": first.pk, "b": second.pk})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    page = client_for(users["annotator"]).get(
        reverse("training:iteration-compare", args=[project.pk]), {"a": first.pk, "b": second.pk}
    )
    assert body["overall"] == page.context["overall"]
    assert body["rows"] == page.context["rows"]
    dog = next(row for row in body["rows"] if row["name"] == "dog")
    assert dog["change"]["precision"]["trend"] == "up"  # 0.5 -> 1.0 at 0.5
    queued = make_iteration(project, number=3, status="queued")
    assert api_client.get(url_compare(project), {"a": first.pk, "b": queued.pk}).status_code == 422
    assert api_client.get(url_compare(project), {"a": first.pk}).status_code == 400


def url_compare(project) -> str:
    return f"/api/projects/{project.pk}/iterations/compare/"
