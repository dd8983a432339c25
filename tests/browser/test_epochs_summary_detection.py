"""A detection iteration's performance page in real Chromium: epochs, the detector kept, the
training loss per epoch and the "still improving" notice sit above the figures."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from labeling.models import Project
from tests.factories import MembershipFactory
from tests.training.detection_data import CRAFTED_ROWS, CRAFTED_TAGS, make_detection_iteration


@pytest.mark.django_db(transaction=True)
def test_detection_iteration_page_says_it_was_still_improving(page, login):
    member = MembershipFactory(role="annotator", user__username="detection-epochs-viewer")
    project = member.project
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    iteration = make_detection_iteration(
        project, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS, training_type="advanced"
    )
    losses = [2.7789, 2.4608, 1.9833, 1.4882, 1.3261, 1.2186, 1.1257, 1.0894, 1.0132, 0.9637]
    iteration.metrics.update(epochs=10, best_epoch=10, epoch_losses=losses, still_improving=True)
    iteration.save(update_fields=["metrics"])

    login(member.user)
    page.goto(reverse("training:iteration-performance", args=[project.id, iteration.id]))

    summary = page.get_by_test_id("epochs-summary")
    expect(summary).to_contain_text("10 epochs of detector training")
    expect(page.get_by_test_id("still-improving")).to_be_visible()
    expect(page.get_by_test_id("epoch-losses")).to_contain_text("2.7789, 2.4608")
    expect(page.get_by_test_id("performance")).to_be_visible()
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(
            path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/epochs-summary-detection.png",
            full_page=True,
        )
