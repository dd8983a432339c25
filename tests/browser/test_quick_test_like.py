"""Quick test in real Chromium with the default settings ("Store it" off): the strip of
training images like the tested one appears under the result, and a keyboard user reaches
its first thumbnail with Tab and opens that image's tagging view with Enter."""

from __future__ import annotations

import os
import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from labeling.models import Project, Role
from labeling.services.thumbnails import make_thumbnails
from predictions.models import Prediction
from tests.factories import MembershipFactory, ProjectFactory
from tests.predictions.conftest import colour_artifact  # noqa: F401
from tests.predictions.test_more_like_this import _training_set
from tests.predictions.test_quick_test_like import (  # noqa: F401
    UPLOAD,
    _iteration,
    lite0_artifact,
)

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")  # a folder: save screenshots of the pages there
FOCUSED_TESTID = "() => document.activeElement && document.activeElement.dataset.testid"


@pytest.fixture
def photo_project(settings, tmp_path, lite0_artifact):  # noqa: F811
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Photos")
    annotator = MembershipFactory(project=project, role=Role.ANNOTATOR, user__username="ann").user
    images, copy = _training_set(project, copy_of=40)  # embedded into the feature cache
    make_thumbnails([image.pk for image in images])
    _iteration(project, lite0_artifact)  # a quick Lite0 model: the preselected iteration
    return project, annotator, copy


def test_a_quick_test_shows_training_images_like_it_and_opens_one_by_keyboard(
    page, login, photo_project
):
    project, annotator, copy = photo_project
    login(annotator)
    page.goto(f"/projects/{project.id}/predictions/quick-test/")
    page.get_by_test_id("quick-test-file").set_input_files(
        {"name": "photo-40.png", "mimeType": "image/png", "buffer": UPLOAD}
    )
    page.get_by_test_id("quick-test-run").click()  # the defaults: preselected model, not stored

    strip = page.get_by_role("region", name="Training images like this one")
    expect(strip).to_be_visible()
    links = strip.get_by_test_id("quick-test-like-link")
    expect(links).to_have_count(12)
    expect(strip.get_by_test_id("quick-test-like-image").first).to_have_attribute(
        "data-image-id", str(copy.pk)
    )
    expect(links.first.locator("img")).to_be_visible()  # a real thumbnail, not the placeholder
    expect(page.get_by_text("{#")).to_have_count(0)  # template comments stay out of the page
    assert not Prediction.objects.exists()
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "quick-test-like.png"), full_page=True)

    # Tab from the top of the page to the strip's first thumbnail, then Enter.
    page.locator("body").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUSED_TESTID) == "quick-test-like-link":
            break
    else:
        pytest.fail("Tab never reached the strip's first thumbnail.")
    expect(links.first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(
        re.compile(re.escape(reverse("labeling:image-tag", args=[project.pk, copy.pk])) + "$")
    )


def test_a_fine_tuned_model_says_why_there_are_no_images_like_it(
    page,
    login,
    settings,
    tmp_path,
    lite0_artifact,  # noqa: F811
):
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Photos")
    annotator = MembershipFactory(project=project, role=Role.ANNOTATOR, user__username="ann").user
    _training_set(project, copy_of=40)
    _iteration(project, lite0_artifact, training_type="advanced")
    login(annotator)
    page.goto(f"/projects/{project.id}/predictions/quick-test/")
    page.get_by_test_id("quick-test-file").set_input_files(
        {"name": "photo-40.png", "mimeType": "image/png", "buffer": UPLOAD}
    )
    page.get_by_test_id("quick-test-run").click()
    strip = page.get_by_role("region", name="Training images like this one")
    expect(strip.get_by_test_id("quick-test-like-absent")).to_contain_text("fine-tuned")
    expect(strip.get_by_test_id("quick-test-like-link")).to_have_count(0)
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "quick-test-like-absent.png"), full_page=True)
