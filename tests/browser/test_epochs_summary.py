"""An advanced iteration's performance page in real Chromium: epochs, the kept checkpoint and
the "still improving" hint sit above the figures."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import MembershipFactory
from tests.training.conftest import make_iteration


@pytest.mark.django_db(transaction=True)
def test_advanced_iteration_page_says_it_was_still_improving(page, login):
    member = MembershipFactory(role="annotator", user__username="epochs-viewer")
    project = member.project
    iteration = make_iteration(
        project,
        rows=[([0], [0.9, 0.1]), ([1], [0.2, 0.8])],
        training_type="advanced",
        metrics={"epochs": 5, "best_epoch": 5, "holdout_losses": [0.9, 0.7, 0.6, 0.5, 0.45, 0.4]},
    )

    login(member.user)
    page.goto(reverse("training:iteration-performance", args=[project.id, iteration.id]))

    expect(page.get_by_test_id("epochs-summary")).to_contain_text("5 epochs of fine-tuning")
    expect(page.get_by_test_id("still-improving")).to_be_visible()
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(
            path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/epochs-summary.png", full_page=True
        )
