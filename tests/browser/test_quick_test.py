"""Quick test in real Chromium: the Predict button is disabled with a spinner while the model
runs; an image URL is fetched on the server and the stored prediction keeps the file's name."""

from __future__ import annotations

import json
import os

import pytest
from playwright.sync_api import expect

from labeling.models import Project, Role
from predictions.models import Prediction
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.image_server import serve
from tests.predictions.conftest import RED, colour_artifact, colour_iteration, colour_png  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
RECORD_BUSY_STATE = """() => {
  const button = document.querySelector('[data-testid=quick-test-run]');
  const indicator = document.querySelector('[data-testid=quick-test-busy]');
  new MutationObserver(() => sessionStorage.setItem('busy-seen', JSON.stringify({
    disabled: button.disabled,
    spinner: !indicator.hidden && indicator.getBoundingClientRect().width > 0,
    text: indicator.textContent.trim(),
  }))).observe(indicator, {attributes: true});
}"""
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")  # a folder: save screenshots of the pages there


@pytest.fixture
def colour_project(colour_artifact):  # noqa: F811
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Colours")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    colour_iteration(project, tags, colour_artifact)
    return project, reviewer


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_predict_shows_a_spinner_and_disables_the_button_while_it_runs(page, login, colour_project):
    project, reviewer = colour_project
    login(reviewer)
    page.goto(f"/projects/{project.id}/predictions/quick-test/")
    expect(page.get_by_test_id("quick-test-busy")).to_be_hidden()
    # Playwright's calls wait while a navigation is pending, so the page notes its own state
    # at the moment the button changes, in sessionStorage, read back on the result page.
    page.evaluate(RECORD_BUSY_STATE)
    page.get_by_test_id("quick-test-file").set_input_files(
        {"name": "barn-door.png", "mimeType": "image/png", "buffer": colour_png(RED)}
    )
    page.get_by_test_id("quick-test-store").check()
    page.get_by_test_id("quick-test-run").click()
    expect(page.get_by_test_id("quick-test-stored")).to_be_visible()
    seen = json.loads(page.evaluate("() => sessionStorage.getItem('busy-seen')") or "null")
    assert seen == {"disabled": True, "spinner": True, "text": "Running the model…"}, seen
    expect(page.get_by_test_id("quick-test-name")).to_have_text("barn-door.png")
    expect(page.get_by_test_id("quick-test-run")).to_be_enabled()
    expect(page.get_by_test_id("quick-test-busy")).to_be_hidden()
    assert Prediction.objects.get().image.original_name == "barn-door.png"
    shot(page, "quick-test-result")


def test_the_busy_state_as_it_looks(page, login, colour_project):
    # A synthetic submit event runs the module's handler without sending the form.
    project, reviewer = colour_project
    login(reviewer)
    page.goto(f"/projects/{project.id}/predictions/quick-test/")
    page.evaluate(
        "() => document.querySelector('[data-busy-form]')"
        ".dispatchEvent(new Event('submit', {cancelable: true}))"
    )
    expect(page.get_by_test_id("quick-test-run")).to_be_disabled()
    expect(page.get_by_test_id("quick-test-busy")).to_be_visible()
    shot(page, "quick-test-busy")


def test_an_image_url_is_tested_and_a_private_one_refused(page, login, colour_project, settings):
    project, reviewer = colour_project
    login(reviewer)
    with serve({"/cams/red-door.png": (200, {}, colour_png(RED))}) as base:
        settings.LOUPE_FETCH_ALLOW_NETWORKS = ""
        page.goto(f"/projects/{project.id}/predictions/quick-test/")
        page.get_by_test_id("quick-test-url").fill(f"{base}/cams/red-door.png")
        page.get_by_test_id("quick-test-run").click()
        expect(page.get_by_test_id("quick-test-error")).to_contain_text("public addresses")
        shot(page, "quick-test-url-refused")

        settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"  # an admin allows this server
        page.get_by_test_id("quick-test-run").click()  # the URL stayed in the field
        expect(page.get_by_test_id("quick-test-name")).to_have_text("red-door.png")
        rows = page.get_by_test_id("quick-test-row")
        expect(rows).to_have_count(3)
        expect(rows.first).to_contain_text("red")
        shot(page, "quick-test-url-result")
