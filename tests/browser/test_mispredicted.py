"""A mispredicted image from a performance page, in real Chromium (issue 11, item 4): the editor
shows the iteration's prediction beside the true labels, Previous/Next walk the mispredicted set
at the page's threshold, "back" returns to the page at that threshold, and the gallery shows the
set."""

from __future__ import annotations

import os
import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from labeling.models import Project
from tests.factories import MembershipFactory, TagFactory
from tests.training.conftest import make_iteration
from tests.training.detection_data import make_detection_iteration

# cat/dog, multiclass. At 0.75: B (dog 0.6 for a cat), D (dog 0.7, under it) and E are wrong.
ROWS = [
    ([0], [0.9, 0.1]),
    ([0], [0.4, 0.6]),
    ([1], [0.2, 0.8]),
    ([1], [0.3, 0.7]),
    ([0], [0.45, 0.55]),
]
# red/blue boxes. At 0.5/0.5: the 2nd misses its box, the 3rd has a wrong one.
DET_ROWS = [
    ([[0, 0.1, 0.1, 0.3, 0.3]], [[0, 0.9, 0.1, 0.1, 0.3, 0.3]]),
    ([[0, 0.5, 0.5, 0.2, 0.2]], []),
    ([], [[1, 0.8, 0.2, 0.2, 0.4, 0.4]]),
]


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/{name}.png", full_page=True)


@pytest.mark.django_db(transaction=True)
def test_tagging_view_walks_the_mispredicted_set_and_returns_to_the_page(page, login):
    admin = MembershipFactory(role="admin", user__username="mispredicted-admin")
    project = admin.project
    TagFactory(project=project, name="cat")
    TagFactory(project=project, name="dog")
    iteration = make_iteration(project, rows=ROWS)
    performance = reverse("training:iteration-performance", args=[project.id, iteration.id])
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(admin.user)
    page.goto(performance)
    page.get_by_test_id("threshold").fill("0.75")
    expect(page.get_by_test_id("mispredicted-count")).to_have_text("3")
    shot(page, "mispredicted-performance")

    page.get_by_test_id("mispredicted-image").first.click()
    prediction = page.get_by_test_id("model-prediction")
    expect(prediction).to_contain_text("Iteration 1 predicted")
    expect(page.get_by_test_id("model-prediction-summary")).to_have_text(
        "predicted: Negative · true: cat"
    )
    expect(prediction.get_by_test_id("predicted-tag-row").first).to_contain_text("dog0.600")
    expect(page.locator(".stage-where")).to_contain_text(
        "Mispredicted by Iteration 1 at threshold 0.75 · image 1 of 3"
    )
    shot(page, "mispredicted-tagging")
    # The browser's Back returns to the page at that threshold too.
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?threshold=0\.75$"))
    expect(page.get_by_test_id("threshold-value")).to_have_text("0.75")
    page.go_forward()
    expect(page.locator(".stage-where")).to_contain_text("image 1 of 3")

    # Next walks the set (the gallery would go to the next image, a correct one).
    page.keyboard.press("ArrowRight")
    expect(page.locator(".stage-where")).to_contain_text("image 2 of 3")
    expect(page.get_by_test_id("model-prediction-summary")).to_have_text(
        "predicted: Negative · true: dog"
    )
    page.keyboard.press("ArrowRight")
    expect(page.locator(".stage-where")).to_contain_text("image 3 of 3")
    expect(page.get_by_test_id("nav-next")).to_have_count(0)

    back = page.get_by_test_id("back-to-gallery")
    expect(back).to_have_text("← Iteration 1 performance")
    back.click()
    expect(page).to_have_url(re.compile(re.escape(performance) + r"\?threshold=0\.75$"))
    expect(page.get_by_test_id("threshold-value")).to_have_text("0.75")
    expect(page.get_by_test_id("mispredicted-count")).to_have_text("3")

    page.get_by_test_id("mispredicted-gallery").click()
    expect(page.get_by_test_id("image-set")).to_contain_text(
        "Mispredicted by Iteration 1 at threshold 0.75: 3 images"
    )
    expect(page.get_by_test_id("thumb")).to_have_count(3)
    expect(page.get_by_test_id("image-grid")).to_contain_text("3 images in this set")
    shot(page, "mispredicted-gallery")
    assert errors == []


@pytest.mark.django_db(transaction=True)
def test_box_editor_shows_predicted_boxes_and_walks_the_set(page, login):
    admin = MembershipFactory(
        role="admin", user__username="mispredicted-boxes", project__kind=Project.Kind.DETECTION
    )
    project = admin.project
    TagFactory(project=project, name="red")
    TagFactory(project=project, name="blue")
    iteration = make_detection_iteration(project, tags=("red", "blue"), rows=DET_ROWS)
    performance = reverse("training:iteration-performance", args=[project.id, iteration.id])
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(admin.user)
    page.goto(performance)
    expect(page.get_by_test_id("mispredicted-count")).to_have_text("2")

    page.get_by_test_id("mispredicted-image").first.click()
    expect(page.get_by_test_id("set-label")).to_contain_text("image 1 of 2")
    expect(page.get_by_test_id("model-prediction-summary")).to_have_text("1 missed · 0 wrong")
    expect(page.get_by_test_id("predicted-box")).to_have_count(0)

    page.get_by_test_id("next-image").click()
    expect(page.get_by_test_id("set-label")).to_contain_text("image 2 of 2")
    expect(page.get_by_test_id("model-prediction-summary")).to_have_text("0 missed · 1 wrong")
    expect(page.get_by_test_id("predicted-box")).to_have_count(1)
    expect(page.get_by_test_id("predicted-box-item")).to_have_text("blue · 0.800")
    expect(page.get_by_test_id("next-image")).to_be_hidden()
    shot(page, "mispredicted-box-editor")

    page.get_by_test_id("back-to-gallery").click()
    expect(page).to_have_url(re.compile(re.escape(performance) + r"\?threshold=0\.5&overlap=0\.5$"))
    expect(page.get_by_test_id("mispredicted-count")).to_have_text("2")
    assert errors == []
