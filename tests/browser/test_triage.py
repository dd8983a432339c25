"""Triage in real Chromium: open the Predictions tab, select the top (least sure) prediction,
fix its tag in the tagging view, Save and close, and find it among the training images."""

from __future__ import annotations

import pytest

from labeling.models import Image, Project, Role
from predictions.models import Prediction
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration  # noqa: F401 (fixture)
from tests.predictions.helpers import crafted_prediction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def triage_project(colour_artifact):  # noqa: F811
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Colours")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, colour_artifact)
    sure = crafted_prediction(project, iteration, [0.02, 0.97, 0.01])
    unsure = crafted_prediction(project, iteration, [0.40, 0.45, 0.15])  # says green: wrong
    return project, reviewer, sure, unsure


def test_review_the_top_prediction_fix_its_tag_and_save(page, login, triage_project):
    project, reviewer, sure, unsure = triage_project
    login(reviewer)
    page.goto(f"/projects/{project.id}/")
    page.get_by_test_id("tab-predictions").click()
    page.wait_for_url(f"**/projects/{project.id}/predictions/")
    thumbs = page.get_by_test_id("prediction-thumb")
    assert thumbs.count() == 2
    assert thumbs.first.get_attribute("data-image-id") == str(unsure.image_id)

    thumbs.first.get_by_test_id("prediction-check").check()
    assert page.get_by_test_id("selected-count").inner_text() == "1 selected"
    page.get_by_test_id("review-selected").click()
    page.wait_for_url(f"**/projects/{project.id}/images/{unsure.image_id}/**")

    # Pre-filled with the predicted tag; the reviewer fixes it to red.
    green = page.get_by_test_id("tag-button").filter(has_text="green")
    red = page.get_by_test_id("tag-button").filter(has_text="red")
    assert green.get_attribute("aria-pressed") == "true"
    page.get_by_test_id("auto-advance").uncheck()  # stay on this image after the key
    page.keyboard.press("1")
    page.wait_for_selector('[data-testid="tag-button"][aria-pressed="true"]:has-text("red")')
    assert green.get_attribute("aria-pressed") == "false"
    assert red.get_attribute("aria-pressed") == "true"

    page.get_by_test_id("save-and-close").click()
    page.wait_for_url(f"**/projects/{project.id}/predictions/")
    assert "Saved to the training data." in page.content()
    remaining = page.get_by_test_id("prediction-thumb")
    assert remaining.count() == 1
    assert remaining.first.get_attribute("data-image-id") == str(sure.image_id)

    page.get_by_test_id("tab-images").click()
    page.wait_for_url(f"**/projects/{project.id}/")
    saved = page.locator(f'[data-testid="thumb"][data-image-id="{unsure.image_id}"]')
    assert saved.count() == 1
    assert "red" in saved.inner_text()

    image = Image.objects.get(pk=unsure.image_id)
    assert image.is_training
    assert list(image.image_tags.values_list("tag__name", flat=True)) == ["red"]
    assert Prediction.objects.get(pk=unsure.pk).status == Prediction.Status.PROMOTED
