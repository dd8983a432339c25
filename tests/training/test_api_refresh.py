"""The API's refresh buttons: POST /api/projects/<id>/health/refresh/ and .../map/refresh/ queue
the job the page's button queues (202 with its state); the worker task (called here directly, as
a worker would) finishes it and the GET shows it. Any member may; others get the error shape."""

from __future__ import annotations

import pytest

from labeling.models import Role
from training.models import EmbeddingMap, HealthReport
from training.services.embedding_map import current_map
from training.tasks_health import check_health
from training.tasks_map import lay_out_map

pytestmark = pytest.mark.django_db

ROUTES = {"health": "health/refresh/", "map": "map/refresh/"}


@pytest.fixture
def cache_dir(settings, tmp_path):
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    return settings.LOUPE_FEATURE_CACHE_DIR


def _url(project_id: int, job: str) -> str:
    return f"/api/projects/{project_id}/{ROUTES[job]}"


def test_health_refresh_queues_a_check_the_worker_runs_and_the_get_shows(
    project, users, client_for, cache_dir
) -> None:
    client = client_for(users[str(Role.ANNOTATOR)])
    response = client.post(_url(project.pk, "health"))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["rules"] == []
    report = HealthReport.objects.get(project=project)
    assert report.status == "queued" and report.requested is not None
    # A second press while one is queued queues nothing new.
    again = client.post(_url(project.pk, "health"))
    assert again.status_code == 202 and again.json()["status"] == "queued"
    assert HealthReport.objects.get(project=project).requested == report.requested

    check_health(project.pk)
    shown = client.get(f"/api/projects/{project.pk}/health/").json()
    assert shown["status"] == "done" and shown["checked"] is not None
    assert shown["rules"], "a finished check lists its rules"
    # Pressed again once done: a fresh check is queued, as the page's button does.
    fresh = client.post(_url(project.pk, "health"))
    assert fresh.status_code == 202 and fresh.json()["status"] == "queued"
    assert HealthReport.objects.get(project=project).requested > report.requested


def test_map_refresh_queues_a_layout_the_worker_runs_and_the_get_shows(
    project, users, client_for
) -> None:
    current_map(project)
    lay_out_map(project.pk)  # a map laid out already, as a project's first visit leaves it
    client = client_for(users[str(Role.ANNOTATOR)])
    response = client.post(_url(project.pk, "map"))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["requested"] is not None
    assert body["laid_out"] is not None and body["image_count"] == 0
    assert EmbeddingMap.objects.get(project=project).status == "queued"
    again = client.post(_url(project.pk, "map")).json()
    assert again["status"] == "queued" and again["requested"] == body["requested"]

    lay_out_map(project.pk)
    shown = client.get(f"/api/projects/{project.pk}/map/").json()
    assert shown["status"] == "done" and shown["image_count"] == 0
    fresh = client.post(_url(project.pk, "map")).json()
    assert fresh["status"] == "queued" and fresh["requested"] > body["requested"]


@pytest.mark.parametrize("job", list(ROUTES))
def test_refresh_refuses_outsiders_in_the_error_shape(project, users, client_for, job) -> None:
    outsider = client_for(users["non_member"]).post(_url(project.pk, job))
    assert outsider.status_code == 404 and outsider.json()["code"] == "not_found"
    missing = client_for(users[str(Role.ADMIN)]).post(_url(987654, job))
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "message"}
    anonymous = client_for(None).post(_url(project.pk, job))
    assert anonymous.status_code == 401 and "code" in anonymous.json()
    assert not HealthReport.objects.exists() and not EmbeddingMap.objects.exists()
