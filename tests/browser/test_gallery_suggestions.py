"""Suggested tags in the gallery, in real Chromium: badges with confidence (low ones marked), the
progress line that follows the worker without a reload, the "Has a suggestion" filter, and
"accept all at or above a confidence"."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from labeling.models import Role
from predictions.models import Suggestion, SuggestionRun
from predictions.services.suggestions import record_suggestion_batch
from tests.browser.test_accessibility import assert_clean, scan
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory
from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db(transaction=True)


def suggest(image, iteration, tag, probability):
    return Suggestion.objects.create(
        image=image,
        iteration=iteration,
        tags=[{"tagId": tag.pk, "tagName": tag.name, "probability": probability}],
    )


@pytest.fixture
def colours():
    project = ProjectFactory(name="Colours")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    red = TagFactory(project=project, name="red")
    green = TagFactory(project=project, name="green")
    iteration = make_iteration(project, tags=("red", "green"))
    ImageFactory(project=project, is_tagged=True)
    sure, unsure, waiting = (ImageFactory(project=project) for _ in range(3))
    suggest(sure, iteration, red, 0.95)
    suggest(unsure, iteration, green, 0.42)
    now = timezone.now()
    SuggestionRun.objects.create(project=project, iteration=iteration, started=now, updated=now)
    return {
        "project": project,
        "reviewer": reviewer,
        "iteration": iteration,
        "red": red,
        "images": (sure, unsure, waiting),
    }


def test_gallery_shows_suggestions_their_progress_and_accepts_all_above_a_confidence(
    page, login, colours, tmp_path
):
    project, iteration = colours["project"], colours["iteration"]
    sure, unsure, waiting = colours["images"]
    login(colours["reviewer"])
    page.goto(f"/projects/{project.pk}/")

    badge = page.locator(f'[data-image-id="{sure.pk}"] [data-testid=suggestion-badge]')
    expect(badge).to_have_text("red? 0.95")
    low = page.locator(f'[data-image-id="{unsure.pk}"] [data-testid=suggestion-badge]')
    expect(low).to_have_text("green? 0.42 · low")
    expect(low).to_have_attribute("title", re.compile("^Low confidence"))
    expect(page.get_by_test_id("count-suggested")).to_have_text("2")

    progress = page.get_by_test_id("suggestion-progress")
    expect(progress).to_contain_text("Suggesting tags with Iteration 1")
    expect(page.get_by_test_id("suggestion-without")).to_have_text("1")
    page.screenshot(path=tmp_path / "gallery-suggesting.png", full_page=True)
    report: dict[str, list[str]] = {}
    scan(page, "gallery-suggestions", report)
    assert_clean(report)

    # The worker stores the last suggestion and ends the run: the page follows without a reload.
    suggest(waiting, iteration, colours["red"], 0.97)
    record_suggestion_batch(project.pk, stored=1, remaining=False)
    expect(progress).to_contain_text("3 images with a suggestion", timeout=10_000)
    expect(progress).not_to_have_attribute("data-running", "1")
    expect(page.get_by_test_id("count-suggested")).to_have_text("3")

    page.get_by_test_id("filter-suggested").click()
    expect(page).to_have_url(re.compile(r"\?filter=suggested$"))
    expect(page.get_by_test_id("thumb")).to_have_count(3)

    page.get_by_test_id("accept-all-confidence").fill("0.9")
    page.get_by_test_id("accept-all").click()
    expect(page.locator(".message")).to_have_text("Accepted 2 suggestions.")
    expect(page).to_have_url(re.compile(r"\?filter=suggested$"))
    # Only the low one still waits; the accepted images carry their tag now.
    expect(page.get_by_test_id("thumb")).to_have_count(1)
    expect(page.get_by_test_id("suggestion-badge")).to_have_text("green? 0.42 · low")
    page.screenshot(path=tmp_path / "gallery-accepted.png", full_page=True)
    page.get_by_test_id("filter-tagged").click()
    expect(page.locator(f'[data-image-id="{sure.pk}"] .thumb-tags')).to_have_text("red")
