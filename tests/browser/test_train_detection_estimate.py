"""The Train tab of a detection project in real Chromium: quick training described as what it
is (a fixed-budget detector training) and the estimate of whether the budget is enough."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from labeling.models import Project
from tests.factories import MembershipFactory, TagFactory
from tests.training.detection_data import add_boxed_images


@pytest.mark.django_db(transaction=True)
def test_detection_train_tab_describes_quick_training_and_estimates_the_budget(
    page, login, settings
):
    settings.LOUPE_DETECTION_QUICK_BUDGET_S = 600
    admin = MembershipFactory(role="admin", user__username="detect-admin")
    project = admin.project
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    add_boxed_images(project, [TagFactory(project=project, name="red")], 6, negatives=2)

    login(admin.user)
    page.goto(reverse("training:train", args=[project.id]))

    form = page.get_by_test_id("train-form")
    expect(form).to_contain_text("train a detector on the frozen pretrained backbone for 10")
    expect(form).not_to_contain_text("minutes at most")
    expect(page.get_by_test_id("budget-estimate")).to_have_text(
        "About 1 minute to prepare 8 images and score the held-out ones; the rest of the "
        "10-minute budget trains the detector."
    )
    page.get_by_test_id("type-quick").check()
    expect(page.get_by_test_id("budget-note")).to_contain_text("fixed budget of 10 minutes")
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(
            path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/train-detection-estimate.png",
            full_page=True,
        )
