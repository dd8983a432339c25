"""Performance and Train pages in real Chromium: the words and states a user reads."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import MembershipFactory, UserFactory
from tests.training.conftest import make_iteration
from tests.training.detection_data import CRAFTED_ROWS, CRAFTED_TAGS, make_detection_iteration

# Two tags; the last image is a Negative one (no tag), the third is predicted below 0.5.
ROWS = [
    ([0], [0.90, 0.10]),
    ([0], [0.70, 0.20]),
    ([1], [0.40, 0.30]),
    ([1], [0.10, 0.85]),
    ([], [0.20, 0.10]),
]


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/{name}.png", full_page=True)


@pytest.mark.django_db(transaction=True)
def test_confusion_matrix_says_negative_and_precision_without_predictions_is_a_dash(page, login):
    admin = UserFactory(username="wording-admin")
    membership = MembershipFactory(user=admin, role="admin")
    iteration = make_iteration(membership.project, tags=("cat", "dog"), rows=ROWS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(admin)
    page.goto(reverse("training:iteration-performance", args=[membership.project_id, iteration.id]))

    confusion = page.get_by_test_id("confusion")
    expect(confusion.locator("th", has_text="Negative")).to_have_count(2)  # row and column
    expect(confusion).not_to_contain_text("none")
    expect(page.get_by_test_id("mispredicted")).to_contain_text("predicted: Negative")
    expect(page.get_by_test_id("precision-0")).to_have_text("1.000")

    page.get_by_test_id("threshold").fill("1")
    expect(page.get_by_test_id("threshold-value")).to_have_text("1.00")
    expect(page.get_by_test_id("precision-0")).to_have_text("—")
    expect(page.get_by_test_id("precision-1")).to_have_text("—")
    expect(page.get_by_test_id("overall-precision")).to_have_text("—")
    expect(page.get_by_test_id("recall-0")).to_have_text("0.000")  # recall is defined: 0 found
    shot(page, "performance-threshold-1")
    assert errors == []


@pytest.mark.django_db(transaction=True)
def test_detection_precision_without_kept_boxes_is_a_dash(page, login):
    admin = UserFactory(username="wording-det-admin")
    membership = MembershipFactory(user=admin, role="admin", project__kind="detection")
    iteration = make_detection_iteration(membership.project, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS)
    login(admin)
    page.goto(reverse("training:iteration-performance", args=[membership.project_id, iteration.id]))
    expect(page.get_by_test_id("overall-precision")).not_to_have_text("—")
    page.get_by_test_id("threshold").fill("1")
    expect(page.get_by_test_id("threshold-value")).to_have_text("1.00")
    expect(page.get_by_test_id("overall-precision")).to_have_text("—")
    expect(page.get_by_test_id("precision-0")).to_have_text("—")


@pytest.mark.django_db(transaction=True)
def test_budget_is_disabled_for_quick_training(page, login):
    admin = UserFactory(username="budget-admin")
    membership = MembershipFactory(user=admin, role="admin")
    login(admin)
    page.goto(reverse("training:train", args=[membership.project_id]))
    budget = page.get_by_test_id("budget")
    expect(page.get_by_test_id("type-quick")).to_be_checked()
    expect(budget).to_be_disabled()
    expect(page.get_by_test_id("budget-note")).to_be_visible()
    expect(page.get_by_test_id("train-form")).not_to_contain_text("force")
    shot(page, "train-quick")
    page.get_by_test_id("type-advanced").check()
    expect(budget).to_be_enabled()
    expect(page.get_by_test_id("budget-note")).to_be_hidden()
    page.get_by_test_id("type-quick").check()
    expect(budget).to_be_disabled()
