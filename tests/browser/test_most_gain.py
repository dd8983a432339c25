"""The Predictions tab in real Chromium: every Most-gain thumbnail says why it is there."""

from __future__ import annotations

import os

import pytest

from labeling.models import Project, Role
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration  # noqa: F401 (fixture)
from tests.predictions.helpers import crafted_prediction

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_most_gain_thumbnail_shows_its_reason(page, login, colour_artifact):  # noqa: F811
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Colours")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, colour_artifact)
    crafted_prediction(project, iteration, [0.02, 0.97, 0.01])
    unsure = crafted_prediction(project, iteration, [0.40, 0.45, 0.15])
    login(reviewer)
    page.goto(f"/projects/{project.id}/predictions/")
    thumbs = page.get_by_test_id("prediction-thumb")
    assert thumbs.count() == 2
    first = thumbs.first
    assert first.get_attribute("data-image-id") == str(unsure.image_id)
    reason = first.get_by_test_id("gain-reason")
    assert reason.is_visible()
    assert reason.inner_text() == "Unsure between “green” and “red”."
    assert thumbs.nth(1).get_by_test_id("gain-reason").inner_text() == (
        "Likely “green” (0.97); less doubtful."
    )
    if os.environ.get("LOUPE_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["LOUPE_SCREENSHOTS"], "most-gain.png"))
