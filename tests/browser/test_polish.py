"""Loose ends a new user notices, in real Chromium: the prediction-keys page's "Create a key"
card and the copy button of a new key, error pages in the app's layout, the favicon."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from labeling.models import Role
from predictions.models import PredictionKey
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

TOPBAR_BACKGROUND = "rgb(29, 35, 43)"  # .topbar in static/css/loupe.css: the stylesheet loaded


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["LOUPE_SCREENSHOTS"], f"{name}.png"))


@pytest.fixture
def admin_project():
    project = ProjectFactory(name="Keys")
    admin = MembershipFactory(project=project, role=Role.ADMIN, user__username="keys-admin").user
    return project, admin


def test_new_key_is_copied_by_its_copy_button(page, login, admin_project):
    project, admin = admin_project
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    login(admin)
    page.goto(reverse("predictions:key-list", args=[project.id]))

    card = page.locator("section.card", has=page.get_by_test_id("key-create"))
    expect(card.get_by_role("heading", name="Create a key")).to_be_visible()
    form = page.get_by_test_id("key-create")
    name, button = form.get_by_label("Name"), form.get_by_role("button", name="Create key")
    # Laid out as one row inside the card (it was an inline form whose card collapsed).
    card_box, name_box, button_box = card.bounding_box(), name.bounding_box(), button.bounding_box()
    assert (
        abs((name_box["y"] + name_box["height"] / 2) - (button_box["y"] + button_box["height"] / 2))
        < 4
    )
    assert button_box["x"] > name_box["x"] + name_box["width"]
    for box in (name_box, button_box):
        assert (
            card_box["y"] < box["y"]
            and box["y"] + box["height"] < card_box["y"] + card_box["height"]
        )
    name.fill("Mobile app")
    button.click()

    issued = page.get_by_test_id("issued-key")
    expect(issued).to_contain_text("shown only this once")
    secret = page.get_by_test_id("key-secret").inner_text().strip()
    assert PredictionKey.objects.get(name="Mobile app").prefix in secret
    issued.get_by_role("button", name="Copy").click()
    expect(page.get_by_test_id("copy-status")).to_have_text("Copied")
    expect(page.get_by_test_id("copy-key")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    shot(page, "keys-copied")
    expect(page.get_by_test_id("copy-key")).to_have_text("Copy", timeout=5_000)


def test_copy_button_without_clipboard_api_selects_the_key(page, login, admin_project):
    # Loupe over plain http on a LAN address has no navigator.clipboard (not a secure context).
    project, admin = admin_project
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    login(admin)
    page.goto(reverse("predictions:key-list", args=[project.id]))
    page.get_by_test_id("key-create").get_by_label("Name").fill("LAN")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("key-secret").inner_text().strip()
    page.get_by_test_id("copy-key").click()
    expect(page.get_by_test_id("copy-status")).not_to_be_empty()
    assert page.evaluate("() => window.getSelection().toString()").strip() == secret


def test_unknown_address_shows_the_apps_404_page_with_a_way_back(page, login, admin_project):
    _, admin = admin_project
    login(admin)
    response = page.goto("/projects/999999/iterations/1/nothing-here/")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.locator(".topbar")).to_have_css("background-color", TOPBAR_BACKGROUND)
    expect(page.get_by_test_id("logout")).to_be_visible()  # signed in: the usual header
    shot(page, "error-404")
    page.get_by_role("link", name="Back to your projects").click()
    page.wait_for_url("**/")
    expect(page.get_by_role("heading", level=1)).not_to_have_text("Not found")


def test_crash_shows_the_apps_500_page(page, login, admin_project, monkeypatch):
    _, admin = admin_project
    login(admin)

    def crash(user):
        raise RuntimeError("secret crash details")

    # The live server runs in this process: the project list now fails as a bug would.
    monkeypatch.setattr("labeling.views.projects.can_create_projects", crash)
    response = page.goto("/")
    assert response.status == 500
    expect(page.get_by_role("heading", level=1)).to_have_text("Something went wrong")
    expect(page.locator(".topbar")).to_have_css("background-color", TOPBAR_BACKGROUND)
    assert "secret crash details" not in page.content()
    shot(page, "error-500")


def test_the_favicon_is_linked_and_served(page):
    page.goto("/accounts/login/")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href and href.endswith(".svg")
    response = page.request.get(href)
    assert response.status == 200
    assert "<svg" in response.text()
