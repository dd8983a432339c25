"""The REST API of iterations: train, poll, cancel, publish, default, rename, threshold, delete.

Through HTTP with a token, asserting on the answers and the database. The worker's part is run
in-process (claim + train, as the task does), so train -> poll -> publish is the real loop.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.training.conftest import make_iteration
from training.models import Iteration
from training.services.iterations import claim_iteration
from training.services.progress import IterationReleased, ProgressReporter

pytestmark = pytest.mark.django_db


def base(project) -> str:
    return f"/api/projects/{project.pk}/iterations/"


@pytest.fixture
def admin_api(users) -> APIClient:
    """The admin with a token from /api/auth/token/, as a script would log in."""
    client = APIClient()
    answer = client.post(
        "/api/auth/token/",
        {"username": users["admin"].username, "password": "password123"},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    client.credentials(HTTP_AUTHORIZATION=f"Token {answer.json()['token']}")
    return client


@pytest.fixture(autouse=True)
def _in_memory_channels(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_train_poll_publish_and_predict_name_through_the_api(
    admin_api, project, users, build_dataset
):
    from training.services.runner import train_iteration

    build_dataset(project, {"red": 6, "green": 6})
    started = admin_api.post(base(project), {"training_type": "quick"}, format="json")
    assert started.status_code == 201, started.content
    body = started.json()
    assert body["status"] == "queued" and body["number"] == 1 and body["figures"] is None
    iteration = Iteration.objects.get(pk=body["id"])
    assert iteration.created_by == users["admin"]

    train_iteration(claim_iteration(iteration.pk))  # what the worker's task does

    polled = admin_api.get(f"{base(project)}{iteration.pk}/").json()
    assert polled["status"] == "completed", polled["failure_message"]
    assert polled["progress"]["fraction"] == 1.0
    assert polled["figures"]["precision"] is not None
    published = admin_api.post(
        f"{base(project)}{iteration.pk}/publish/", {"name": "prod"}, format="json"
    )
    assert published.status_code == 200 and published.json()["published_name"] == "prod"
    iteration.refresh_from_db()
    assert iteration.published_name == "prod"
    # The same rule as the page: nothing changed, so a second training is refused (422) ...
    again = admin_api.post(base(project), {"training_type": "quick"}, format="json")
    assert again.status_code == 422 and again.json()["code"] == "training_not_needed"
    assert "Nothing changed" in again.json()["message"]
    # ... unless forced.
    forced = admin_api.post(base(project), {"training_type": "quick", "force": True}, format="json")
    assert forced.status_code == 201 and Iteration.objects.get(pk=forced.json()["id"]).is_forced


def test_advanced_training_takes_a_budget_in_seconds_within_the_limits(
    admin_api, project, build_dataset, settings
):
    build_dataset(project, {"red": 6, "green": 6})
    too_short = admin_api.post(
        base(project), {"training_type": "advanced", "budget_s": 1}, format="json"
    )
    assert too_short.status_code == 422 and "budget" in too_short.json()["message"]
    budget = settings.LOUPE_TRAIN_MIN_BUDGET_S
    started = admin_api.post(
        base(project), {"training_type": "advanced", "budget_s": budget}, format="json"
    )
    assert started.status_code == 201, started.content
    iteration = Iteration.objects.get(pk=started.json()["id"])
    assert (iteration.training_type, iteration.budget_s) == ("advanced", budget)
    bad_type = admin_api.post(base(project), {"training_type": "slow"}, format="json")
    assert bad_type.status_code == 400 and bad_type.json()["field"] == "training_type"


def test_cancel_ends_a_queued_iteration_and_stops_a_training_worker(
    admin_api, project, build_dataset
):
    build_dataset(project, {"red": 6, "green": 6})
    queued = Iteration.objects.get(
        pk=admin_api.post(base(project), {"training_type": "quick"}, format="json").json()["id"]
    )
    claimed = claim_iteration(queued.pk)
    assert claimed is not None and claimed.status == "training"
    reporter = ProgressReporter(claimed)

    answer = admin_api.post(f"{base(project)}{queued.pk}/cancel/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "failed"
    assert answer.json()["failure_reason"] == "cancelled"
    queued.refresh_from_db()
    assert queued.status == "failed" and queued.finished is not None
    # The worker's next progress report finds its hold gone and stops training.
    with pytest.raises(IterationReleased):
        reporter("epoch 2/10", 0.5, force=True)
    # Cancelling again: it is not running any more.
    again = admin_api.post(f"{base(project)}{queued.pk}/cancel/")
    assert again.status_code == 422
    # The project can train again at once.
    assert admin_api.post(base(project), {"force": True}, format="json").status_code == 201


def test_rename_default_threshold_unpublish_and_delete(admin_api, project):
    first = make_iteration(project, number=1, rows=[([0], [0.9, 0.1]), ([1], [0.3, 0.7])])
    second = make_iteration(project, number=2, published_name="prod")
    url = f"{base(project)}{first.pk}/"
    renamed = admin_api.patch(url, {"name": "Best so far"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Best so far"
    assert admin_api.post(url + "default/").json()["is_default"] is True
    assert Iteration.objects.get(is_default=True).pk == first.pk
    threshold = admin_api.put(url + "threshold/", {"threshold": 0.65}, format="json")
    assert threshold.status_code == 200
    assert threshold.json()["suggested_threshold"] == 0.65
    assert threshold.json()["figures"]["threshold"] == 0.65
    # A published iteration cannot be deleted (clients may call it): unpublish first.
    second_url = f"{base(project)}{second.pk}/"
    refused = admin_api.delete(second_url)
    assert refused.status_code == 422 and "Unpublish" in refused.json()["message"]
    assert admin_api.delete(second_url + "publish/").json()["published_name"] is None
    assert admin_api.delete(second_url).status_code == 204
    assert not Iteration.objects.filter(pk=second.pk).exists()
    # Bad input: a name too long, a threshold outside 0..1, an unknown id.
    assert admin_api.patch(url, {"name": "x" * 101}, format="json").status_code == 400
    assert admin_api.put(url + "threshold/", {"threshold": 2}, format="json").status_code == 400
    missing = admin_api.get(f"{base(project)}{2**70}/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_publish_name_rules_come_from_the_service(admin_api, project):
    iteration = make_iteration(project, number=1)
    url = f"{base(project)}{iteration.pk}/publish/"
    bad = admin_api.post(url, {"name": "my model"}, format="json")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid"
    queued = make_iteration(project, number=2, status="queued")
    not_done = admin_api.post(f"{base(project)}{queued.pk}/publish/", {"name": "x"}, format="json")
    assert not_done.status_code == 422 and "completed" in not_done.json()["message"]
    assert Iteration.objects.published().count() == 0


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_members_read_iterations_but_only_admins_act(api_client, project, users, role):
    iteration = make_iteration(project)
    api_client.force_authenticate(users[role])
    assert api_client.get(f"{base(project)}{iteration.pk}/").status_code == 200
    for call in (
        lambda: api_client.post(f"{base(project)}{iteration.pk}/publish/", {"name": "p"}),
        lambda: api_client.post(f"{base(project)}{iteration.pk}/default/"),
        lambda: api_client.delete(f"{base(project)}{iteration.pk}/"),
        lambda: api_client.post(base(project), {"training_type": "quick"}),
    ):
        answer = call()
        assert answer.status_code == 403 and answer.json()["code"] == "forbidden"
    iteration.refresh_from_db()
    assert not iteration.is_published and not iteration.is_default


def test_iteration_list_pages_by_cursor_newest_first(api_client, project, users):
    for number in range(1, 6):
        make_iteration(project, number=number)
    api_client.force_authenticate(users["annotator"])
    first = api_client.get(base(project), {"page_size": 2}).json()
    assert first["count"] == 5
    assert [row["number"] for row in first["results"]] == [5, 4]
    second = api_client.get(first["next"]).json()
    assert [row["number"] for row in second["results"]] == [3, 2]
    third = api_client.get(base(project), {"page_size": 2, "after": second["next_cursor"]}).json()
    assert [row["number"] for row in third["results"]] == [1]
    assert third["next_cursor"] is None and third["next"] is None


def test_iteration_list_costs_the_same_queries_for_more_iterations(api_client, project, users):
    api_client.force_authenticate(users["admin"])
    make_iteration(project, number=1)
    with CaptureQueriesContext(connection) as few:
        assert api_client.get(base(project)).status_code == 200
    for number in range(2, 8):
        make_iteration(project, number=number)
    with CaptureQueriesContext(connection) as many:
        assert api_client.get(base(project)).status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_an_iteration_of_another_project_is_404(admin_api, project):
    from tests.factories import ProjectFactory

    other = make_iteration(ProjectFactory())
    assert admin_api.get(f"{base(project)}{other.pk}/").status_code == 404
    assert admin_api.post(f"{base(project)}{other.pk}/publish/", {"name": "x"}).status_code == 404
    assert Token.objects.count() == 1


def test_a_worker_that_claimed_a_cancelled_iteration_stops_and_keeps_the_verdict(
    admin_api, project, build_dataset
):
    from django.core.files.storage import default_storage

    from training.services.runner import train_iteration

    build_dataset(project, {"red": 6, "green": 6})
    iteration_id = admin_api.post(base(project), {}, format="json").json()["id"]
    claimed = claim_iteration(iteration_id)
    assert admin_api.post(f"{base(project)}{iteration_id}/cancel/").status_code == 200
    train_iteration(claimed)  # the worker goes on; its first progress report stops it
    iteration = Iteration.objects.get(pk=iteration_id)
    assert (iteration.status, iteration.failure_reason) == ("failed", "cancelled")
    assert not iteration.artifact and not iteration.scores.exists()
    # It stopped before training: no model was written (one that ran on would have saved it).
    assert not default_storage.exists(f"iterations/{iteration_id}/model.pt")
