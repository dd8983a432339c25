"""The possible-mislabels queue over the API: GET /api/projects/<id>/mislabels/ (ranked, paged by
number), POST .../accept/ and .../keep/, through the same services as the page (reviewers and
up); refusals in the {"code", "message"} shape."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.models import ImageTag, Role
from tests.factories import MembershipFactory, ProjectFactory
from tests.training.test_mislabels import scored_project
from training.models import KeptLabel

pytestmark = pytest.mark.django_db


def _url(project_id: int, action: str = "") -> str:
    return f"/api/projects/{project_id}/mislabels/" + (f"{action}/" if action else "")


def test_the_queue_lists_the_flipped_images_most_likely_first_and_pages_by_keyset(
    project, users, client_for
) -> None:
    tags, images = scored_project(project, {3: 1, 25: 0})
    client = client_for(users[str(Role.REVIEWER)])
    response = client.get(_url(project.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and body["next_cursor"] is None and body["next"] is None
    assert body["iteration_id"] == project.iterations.get().pk
    rows = {row["image_id"]: row for row in body["results"]}
    assert set(rows) == {images[3].pk, images[25].pk}
    first = rows[images[3].pk]
    assert (first["given"], first["suggested"], first["kind"]) == ("dog", "cat", "label")
    assert first["label_key"] == f"mc:{tags[1].pk}" and first["confidence"] > 0.8
    assert first["detected"] is None
    confidences = [row["confidence"] for row in body["results"]]
    assert confidences == sorted(confidences, reverse=True)

    one = client.get(_url(project.pk), {"page_size": 1}).json()
    assert one["count"] == 2 and len(one["results"]) == 1 and one["next_cursor"]
    assert f"after={one['next_cursor']}".replace(":", "%3A") in one["next"]
    # Accepting the first page's row before asking for the next skips nothing (a page number
    # would: the queue is one shorter, and its page 2 empty).
    accepted = one["results"][0]
    taken = {"image_id": accepted["image_id"], "label_key": accepted["label_key"]}
    response = client.post(_url(project.pk, "accept"), taken, content_type="application/json")
    assert response.status_code == 200, response.content
    two = client.get(one["next"]).json()
    assert two["next_cursor"] is None and two["next"] is None and two["count"] == 1
    assert {accepted["image_id"], two["results"][0]["image_id"]} == set(rows)


def test_a_cursor_the_queue_did_not_give_or_from_an_older_iteration_answers_400(
    project, users, client_for
) -> None:
    scored_project(project, {3: 1, 25: 0})
    client = client_for(users[str(Role.REVIEWER)])
    iteration = project.iterations.get()
    for cursor in (
        "x",
        "1:",
        f"{iteration.pk}:-1",
        f"{iteration.pk + 1}:1",
        "²:²",
        "9" * 40 + ":1",
    ):
        response = client.get(_url(project.pk), {"after": cursor})
        assert response.status_code == 400, cursor
        assert response.json()["code"] == "bad_cursor"
    assert client.get(_url(project.pk), {"after": f"{iteration.pk}:1"}).status_code == 200


def test_accept_relabels_through_the_tagging_service_and_leaves_the_queue(
    project, users, client_for
) -> None:
    tags, images = scored_project(project, {3: 1, 25: 0})
    client = client_for(users[str(Role.REVIEWER)])
    row = next(
        r for r in client.get(_url(project.pk)).json()["results"] if r["image_id"] == images[3].pk
    )
    version = images[3].version
    body = {"image_id": row["image_id"], "label_key": row["label_key"]}
    response = client.post(_url(project.pk, "accept"), body, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {**body, "status": "accepted"}
    assert list(ImageTag.objects.filter(image=images[3]).values_list("tag", flat=True)) == [
        tags[0].pk
    ]
    images[3].refresh_from_db()
    assert images[3].version == version + 1  # the tagging service's compare-and-set
    assert client.get(_url(project.pk)).json()["count"] == 1
    # Pressed twice: the suggestion is gone, a 404 in the error shape.
    again = client.post(_url(project.pk, "accept"), body, content_type="application/json")
    assert again.status_code == 404 and again.json()["code"] == "not_found"


def test_keep_records_the_label_and_stops_the_flag(project, users, client_for) -> None:
    tags, images = scored_project(project, {25: 0})
    client = client_for(users[str(Role.ADMIN)])
    row = client.get(_url(project.pk)).json()["results"][0]
    body = {"image_id": images[25].pk, "label_key": row["label_key"]}
    response = client.post(_url(project.pk, "keep"), body, content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "kept"
    assert KeptLabel.objects.filter(image=images[25], label_key=f"mc:{tags[0].pk}").exists()
    assert ImageTag.objects.get(image=images[25]).tag == tags[0]  # label untouched
    assert client.get(_url(project.pk)).json()["count"] == 0
    again = client.post(_url(project.pk, "keep"), body, content_type="application/json")
    assert again.status_code == 404 and again.json()["code"] == "not_found"


@pytest.mark.parametrize("action", ["", "accept", "keep"])
def test_annotators_get_403_and_outsiders_404_in_the_error_shape(
    project, users, client_for, action
) -> None:
    _tags, images = scored_project(project, {3: 1})
    body = {"image_id": images[3].pk, "label_key": "mc:1"}

    def call(user):
        client = client_for(user)
        if action:
            return client.post(_url(project.pk, action), body, content_type="application/json")
        return client.get(_url(project.pk))

    refused = call(users[str(Role.ANNOTATOR)])
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    hidden = call(users["non_member"])
    assert hidden.status_code == 404 and set(hidden.json()) == {"code", "message"}
    assert call(None).status_code == 401
    assert not KeptLabel.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"image_id": "abc", "label_key": "x"}, 400, "image_id"),
        ({"image_id": 10**30, "label_key": "x"}, 400, "image_id"),
        ({"image_id": 1}, 400, "label_key"),
        ({"image_id": 999999, "label_key": "mc:1"}, 404, None),
    ],
)
@pytest.mark.parametrize("action", ["accept", "keep"])
def test_bad_ids_and_bodies_are_refused_in_the_error_shape(
    project, users, client_for, action, body, status, field
) -> None:
    scored_project(project, {3: 1})
    client = client_for(users[str(Role.REVIEWER)])
    response = client.post(_url(project.pk, action), body, content_type="application/json")
    assert response.status_code == status
    answer = response.json()
    assert {"code", "message"} <= set(answer)
    assert answer.get("field") == field
    assert client.get(_url(project.pk)).json()["count"] == 1  # nothing changed


def test_a_bad_page_size_is_400(project, users, client_for) -> None:
    client = client_for(users[str(Role.REVIEWER)])
    for query in ({"page_size": 0}, {"page_size": 1000}, {"page_size": "x"}):
        response = client.get(_url(project.pk), query)
        assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_the_queue_costs_the_same_queries_however_long_it_is(users, client_for) -> None:
    counts = []
    for flipped in ({3: 1}, {n: 1 for n in range(8)}):
        project = ProjectFactory()
        MembershipFactory(project=project, user=users[str(Role.ADMIN)], role=Role.ADMIN)
        scored_project(project, flipped)
        client = client_for(users[str(Role.ADMIN)])
        client.get(_url(project.pk))  # candidates are computed once per iteration, then cached
        with CaptureQueriesContext(connection) as queries:
            body = client.get(_url(project.pk)).json()
        assert body["count"] == len(flipped)
        counts.append(len(queries))
    assert counts[0] == counts[1]
