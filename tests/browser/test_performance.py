"""Performance page in real Chromium: the threshold slider recomputes the figures in the page."""

from __future__ import annotations

import os

import numpy as np
import pytest
from django.urls import reverse

from tests.factories import MembershipFactory, UserFactory
from tests.training.conftest import make_iteration
from training.ml.metrics import classification_metrics
from training.models import Iteration

# Twelve images of three tags; the scores are crafted so that precision and recall move between
# thresholds 0.5 and 0.3 (several true tags score 0.35-0.45, some wrong ones 0.32-0.4).
ROWS = [
    ([0], [0.90, 0.05, 0.05]),
    ([0], [0.45, 0.40, 0.15]),
    ([0], [0.38, 0.32, 0.30]),
    ([0], [0.70, 0.20, 0.10]),
    ([1], [0.10, 0.80, 0.10]),
    ([1], [0.35, 0.42, 0.23]),
    ([1], [0.40, 0.36, 0.24]),
    ([1], [0.05, 0.90, 0.05]),
    ([2], [0.20, 0.20, 0.60]),
    ([2], [0.33, 0.30, 0.37]),
    ([2], [0.10, 0.45, 0.45]),
    ([], [0.20, 0.10, 0.10]),
]


def expected(threshold: float) -> dict:
    y_true = np.zeros((len(ROWS), 3))
    for i, (labels, _) in enumerate(ROWS):
        y_true[i, labels] = 1
    scores = np.array([s for _, s in ROWS])
    return classification_metrics(y_true, scores, threshold=threshold, multiclass=True)


def shown(page, testid: str) -> float:
    return float(page.get_by_test_id(testid).inner_text())


@pytest.mark.django_db(transaction=True)
def test_slider_recomputes_precision_and_recall_without_a_request(page, login):
    admin = UserFactory(username="perf-admin")
    membership = MembershipFactory(user=admin, role="admin")
    iteration = make_iteration(membership.project, tags=("cat", "dog", "fox"), rows=ROWS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(admin)
    page.goto(reverse("training:iteration-performance", args=[membership.project_id, iteration.id]))
    page.get_by_test_id("mispredicted-count").filter(has_text="").wait_for()
    at_half = expected(0.5)
    for j in range(3):
        assert shown(page, f"precision-{j}") == pytest.approx(
            at_half["per_tag"][j]["precision"], abs=5e-4
        )
    assert shown(page, "overall-recall") == pytest.approx(at_half["recall"], abs=5e-4)
    wrong_at_half = int(page.get_by_test_id("mispredicted-count").inner_text())

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.get_by_test_id("threshold").fill("0.3")

    at_030 = expected(0.3)
    page.get_by_test_id("threshold-value").filter(has_text="0.30").wait_for()
    for j in range(3):
        assert shown(page, f"precision-{j}") == pytest.approx(
            at_030["per_tag"][j]["precision"], abs=5e-4
        )
        assert shown(page, f"recall-{j}") == pytest.approx(at_030["per_tag"][j]["recall"], abs=5e-4)
    assert shown(page, "overall-precision") == pytest.approx(at_030["precision"], abs=5e-4)
    assert shown(page, "overall-recall") == pytest.approx(at_030["recall"], abs=5e-4)
    assert at_030["recall"] > at_half["recall"]  # the numbers did move
    assert int(page.get_by_test_id("mispredicted-count").inner_text()) != wrong_at_half
    assert page.get_by_test_id("mispredicted-image").count() >= 1
    if os.environ.get("LOUPE_SCREENSHOT"):
        page.screenshot(path=os.environ["LOUPE_SCREENSHOT"], full_page=True)
    assert requests == []  # computed in the page: not one request for the move

    # Saving is one explicit POST; the threshold is kept for this iteration.
    with page.expect_response(lambda r: "/threshold/" in r.url) as saved:
        page.get_by_test_id("save-threshold").click()
    assert saved.value.status == 204
    page.get_by_test_id("threshold-saved").filter(has_text="Saved 0.30.").wait_for()
    assert Iteration.objects.get(pk=iteration.pk).suggested_threshold == 0.3
    assert errors == []  # Chart.js and the page's module ran cleanly
