"""One current iteration everywhere (issue 11, item 7), in real Chromium: the Predictions tab,
Quick test and Suggest tags preselect the project's default iteration and say which one."""

from __future__ import annotations

import os

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import MembershipFactory, TagFactory
from tests.predictions.helpers import crafted_prediction
from tests.training.conftest import make_iteration


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/{name}.png", full_page=True)


def trained(project, number: int, **fields):
    iteration = make_iteration(project, number=number, tags=("cat", "dog"), **fields)
    for it_tag, tag in zip(
        iteration.tags.order_by("index"), project.tags.order_by("id"), strict=True
    ):
        it_tag.tag = tag
        it_tag.image_count = 30
        it_tag.save()
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    return iteration


@pytest.mark.django_db(transaction=True)
def test_predictions_quick_test_and_suggest_tags_use_the_default_iteration(page, login):
    reviewer = MembershipFactory(role="reviewer", user__username="current-it-reviewer")
    project = reviewer.project
    TagFactory(project=project, name="cat")
    TagFactory(project=project, name="dog")
    default = trained(project, 1, is_default=True)
    newer = trained(project, 2)
    crafted_prediction(project, newer, [0.55, 0.45])  # the newer one has open work
    login(reviewer.user)

    page.goto(reverse("predictions:prediction-list", args=[project.id]))
    expect(page.get_by_test_id("iteration-select")).to_have_value(str(default.id))
    expect(page.get_by_test_id("iteration-in-use")).to_contain_text(
        "Iteration 1, the project's default iteration"
    )
    expect(page.get_by_test_id("suggest-tags")).to_have_text(
        "Suggest tags for untagged images with Iteration 1"
    )
    expect(page.get_by_test_id("open-elsewhere")).to_have_text("Iteration 2")
    shot(page, "predictions-current-iteration")

    # The dropdown still switches, and the page keeps naming the current one.
    page.get_by_test_id("iteration-select").select_option(str(newer.id))
    expect(page.get_by_test_id("prediction-thumb")).to_have_count(1)
    expect(page.get_by_test_id("iteration-in-use")).to_contain_text(
        "the current iteration is Iteration 1"
    )

    page.get_by_test_id("quick-test-link").click()
    expect(page.locator("select[name=iteration]")).to_have_value(str(default.id))
    expect(page.get_by_test_id("quick-test-current")).to_contain_text(
        "Iteration 1, the project's default iteration"
    )
    shot(page, "quick-test-current-iteration")
