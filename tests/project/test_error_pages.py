"""Error pages with DEBUG off (as in production): 404, 403 and 500 are pages of the app, in its
layout with a way back, while the JSON API keeps answering JSON."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.views import defaults

from project.errors import handler500
from training.models import Iteration

# The project list calls this; making it fail stands in for any view that breaks.
LIST_DEPENDENCY = "labeling.views.projects.can_create_projects"


def assert_app_page(html: str) -> None:
    assert 'class="topbar"' in html
    assert "css/loupe.css" in html
    assert 'rel="icon"' in html
    assert 'data-testid="error"' in html
    assert 'href="/"' in html or "Back to your projects" in html


@pytest.fixture(autouse=True)
def _production_errors(settings):
    settings.DEBUG = False
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False


def test_unknown_address_answers_the_apps_404_page(client, users):
    client.force_login(users["admin"])
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert [t.name for t in response.templates][:2] == ["404.html", "base.html"]
    html = response.content.decode()
    assert_app_page(html)
    assert "<h1>Not found</h1>" in html
    assert "/no-such-page/" in html
    assert users["admin"].username in html  # the signed-in header, as on every page


def test_missing_object_answers_the_apps_404_page(client, project, users):
    client.force_login(users["admin"])
    missing = (Iteration.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    response = client.get(f"/projects/{project.pk}/iterations/{missing}/")
    assert response.status_code == 404
    assert_app_page(response.content.decode())


def test_permission_denied_answers_the_apps_403_page(client, users, monkeypatch):
    def refuse(user):
        raise PermissionDenied("internal reason, not for users")

    monkeypatch.setattr(LIST_DEPENDENCY, refuse)
    client.force_login(users["admin"])
    response = client.get("/")
    assert response.status_code == 403
    html = response.content.decode()
    assert_app_page(html)
    assert "<h1>Not allowed</h1>" in html
    assert "internal reason" not in html


def test_crash_answers_the_apps_500_page_without_details(client, users, monkeypatch):
    def crash(user):
        raise RuntimeError("secret crash details")

    monkeypatch.setattr(LIST_DEPENDENCY, crash)
    client.force_login(users["admin"])
    client.raise_request_exception = False
    response = client.get("/")
    assert response.status_code == 500
    html = response.content.decode()
    assert_app_page(html)
    assert "<h1>Something went wrong</h1>" in html
    assert "secret crash details" not in html


def test_500_page_renders_without_a_request_or_the_database():
    # No `db` fixture: any query would fail this test. Django renders 500.html with an empty
    # context (no request, no context processors), so it must need neither.
    html = render_to_string("500.html")
    assert_app_page(html)
    response = handler500(RequestFactory().get("/projects/1/"))
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
    assert defaults.server_error(RequestFactory().get("/")).status_code == 500


@pytest.mark.django_db
def test_the_api_still_answers_json_errors(client, monkeypatch):
    response = client.get("/api/no-such-endpoint/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = handler500(RequestFactory().get("/api/projects/"))
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_every_page_links_the_favicon(client):
    html = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html


@pytest.mark.django_db
def test_stale_form_answers_the_apps_403_page_not_djangos_csrf_page():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "someone", "password": "password123"}
    )
    assert response.status_code == 403
    html = response.content.decode()
    assert_app_page(html)
    assert "<h1>This form expired</h1>" in html
    assert "CSRF verification failed" not in html
