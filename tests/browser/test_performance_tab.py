"""The Performance tab in real Chromium (issue 11, item 6): it opens the default iteration, the
switcher changes iteration, an admin publishes from the iteration's page, compare colours the
changes and names its thresholds."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import MembershipFactory
from tests.training.conftest import make_iteration
from training.models import Iteration

ROWS = [([0], [0.9, 0.1]), ([0], [0.4, 0.6]), ([1], [0.2, 0.8]), ([1], [0.3, 0.7])]


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/{name}.png", full_page=True)


@pytest.mark.django_db(transaction=True)
def test_tab_opens_the_default_iteration_and_the_switcher_changes_it(page, login):
    admin = MembershipFactory(role="admin", user__username="perf-tab-admin")
    project = admin.project
    first = make_iteration(project, number=1, rows=ROWS, is_default=True)
    second = make_iteration(project, number=2, rows=ROWS)
    login(admin.user)
    page.goto(reverse("labeling:project-detail", args=[project.id]))
    page.get_by_test_id("tab-performance").click()
    expect(page).to_have_url(reverse("training:iteration-performance", args=[project.id, first.id]))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Iteration 1")
    expect(page.get_by_test_id("overall-precision")).to_have_text("0.750")
    shot(page, "performance-default")

    expect(page.get_by_role("button", name="Show")).to_be_hidden()  # choosing is enough
    page.get_by_test_id("iteration-switcher").select_option(str(second.id))
    expect(page).to_have_url(
        reverse("training:iteration-performance", args=[project.id, second.id])
    )
    expect(page.get_by_role("heading", level=1)).to_contain_text("Iteration 2")

    # Publish and make default from the iteration's own page.
    page.get_by_test_id("publish-name").fill("birds-v2")
    page.get_by_test_id("publish").click()
    expect(page.get_by_test_id("published-badge")).to_have_text("published as birds-v2")
    page.get_by_test_id("make-default").click()
    expect(page.get_by_test_id("default-badge")).to_be_visible()
    expect(page.get_by_test_id("make-default")).to_have_count(0)
    shot(page, "performance-published")
    second.refresh_from_db()
    assert second.published_name == "birds-v2" and second.is_default
    assert not Iteration.objects.get(pk=first.pk).is_default


@pytest.mark.django_db(transaction=True)
def test_compare_colours_changes_and_names_its_thresholds(page, login):
    admin = MembershipFactory(role="admin", user__username="compare-admin")
    project = admin.project
    make_iteration(project, number=1, rows=ROWS)
    make_iteration(project, number=2, tags=("cat", "owl"), rows=ROWS, suggested_threshold=0.85)
    login(admin.user)
    page.goto(reverse("training:iteration-list", args=[project.id]))
    expect(page.get_by_test_id("threshold-2")).to_have_text("0.85")
    expect(page.get_by_test_id("precision-2")).to_have_text("100%")
    shot(page, "iterations")
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_test_id("compare-thresholds")).to_contain_text("Iteration 1 at 0.50")
    expect(page.get_by_test_id("compare-thresholds")).to_contain_text("Iteration 2 at 0.85")
    overall = page.get_by_test_id("compare-Overall")
    up = overall.get_by_test_id("change-precision")
    down = overall.get_by_test_id("change-recall")
    expect(up).to_have_text("▲ +0.250")
    expect(down).to_have_text("▼ -0.500")
    colour = "el => getComputedStyle(el).color"
    assert up.evaluate(colour) == "rgb(23, 112, 61)"  # --ok
    assert down.evaluate(colour) == "rgb(180, 35, 35)"  # --bad
    shot(page, "compare")
