"""Detection performance page in real Chromium: both sliders recompute the figures in the page,
exactly as training.ml.detection_metrics.precision_recall_at does in Python."""

from __future__ import annotations

import os
import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import MembershipFactory, UserFactory
from tests.training.detection_data import CRAFTED_ROWS, CRAFTED_TAGS, make_detection_iteration
from training.ml.detection_metrics import precision_recall_at

GROUND_TRUTH = [[tuple(b) for b in gt] for gt, _ in CRAFTED_ROWS]
DETECTIONS = [[tuple(d) for d in dets] for _, dets in CRAFTED_ROWS]


def python_counts(probability: float, overlap: float, images=None):
    images = range(len(CRAFTED_ROWS)) if images is None else images
    return precision_recall_at(
        [GROUND_TRUTH[i] for i in images],
        [DETECTIONS[i] for i in images],
        num_tags=len(CRAFTED_TAGS),
        probability_threshold=probability,
        overlap_threshold=overlap,
    )


def mispredicted_in_python(probability: float, overlap: float) -> int:
    return sum(
        any(
            c.false_positives or c.false_negatives for c in python_counts(probability, overlap, [i])
        )
        for i in range(len(CRAFTED_ROWS))
    )


def assert_page_matches_python(page, probability: float, overlap: float) -> None:
    expected = python_counts(probability, overlap)
    for j, counts in enumerate(expected):
        precision = float(page.get_by_test_id(f"precision-{j}").get_attribute("data-value"))
        recall = float(page.get_by_test_id(f"recall-{j}").get_attribute("data-value"))
        assert precision == pytest.approx(counts.precision, abs=1e-12), (probability, overlap, j)
        assert recall == pytest.approx(counts.recall, abs=1e-12), (probability, overlap, j)
        found = f"{counts.true_positives} of {counts.true_positives + counts.false_negatives}"
        expect(page.get_by_test_id(f"found-{j}")).to_have_text(found)
        expect(page.get_by_test_id(f"wrong-{j}")).to_have_text(str(counts.false_positives))
    tp = sum(c.true_positives for c in expected)
    kept = tp + sum(c.false_positives for c in expected)
    truths = tp + sum(c.false_negatives for c in expected)
    assert float(page.get_by_test_id("overall-precision").inner_text()) == pytest.approx(
        tp / kept, abs=5e-4
    )
    assert float(page.get_by_test_id("overall-recall").inner_text()) == pytest.approx(
        tp / truths, abs=5e-4
    )
    expect(page.get_by_test_id("mispredicted-count")).to_have_text(
        str(mispredicted_in_python(probability, overlap))
    )


@pytest.mark.django_db(transaction=True)
def test_both_sliders_recompute_per_tag_figures_in_the_page_like_python(page, login):
    admin = UserFactory(username="detection-admin")
    membership = MembershipFactory(user=admin, role="admin", project__kind="detection")
    project = membership.project
    iteration = make_detection_iteration(project, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(admin)
    page.goto(reverse("training:iteration-performance", args=[project.id, iteration.id]))
    expect(page.get_by_test_id("mispredicted-count")).to_have_text(re.compile(r"^\d+$"))
    assert_page_matches_python(page, 0.5, 0.5)
    before = page.get_by_test_id("per-tag").inner_text()

    requests: list[str] = []
    page.on(
        "request",
        lambda request: request.resource_type != "image" and requests.append(request.url),
    )
    page.get_by_test_id("threshold").fill("0.3")
    expect(page.get_by_test_id("threshold-value")).to_have_text("0.30")
    assert_page_matches_python(page, 0.3, 0.5)
    page.get_by_test_id("overlap").fill("0.35")
    expect(page.get_by_test_id("overlap-value")).to_have_text("0.35")
    assert_page_matches_python(page, 0.3, 0.35)
    assert page.get_by_test_id("per-tag").inner_text() != before  # the numbers did move
    page.get_by_test_id("threshold").fill("0.5")
    page.get_by_test_id("overlap").fill("0.8")
    expect(page.get_by_test_id("overlap-value")).to_have_text("0.80")
    assert_page_matches_python(page, 0.5, 0.8)
    assert requests == []  # computed in the page: not one request for any move

    # A mispredicted image shows its true and predicted boxes and opens in the box editor.
    card = page.get_by_test_id("mispredicted-image").first
    assert card.locator("rect.det-true").count() >= 1
    assert card.locator("rect.det-predicted").count() >= 1
    href = card.get_attribute("href")
    # The link names the set the editor walks: this iteration at the page's two thresholds.
    pattern = rf"/projects/{project.id}/images/\d+/boxes/\?mispredicted={iteration.id}"
    assert re.fullmatch(pattern + r"&threshold=[\d.]+&overlap=[\d.]+", href), href
    if os.environ.get("LOUPE_SCREENSHOT"):
        page.screenshot(path=os.environ["LOUPE_SCREENSHOT"], full_page=True)
    assert errors == []
