"""Detection Most gain in real Chromium: a box the model finds one way round only comes first,
and its reason says the boxes disagree under flip."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from django.core.files.base import ContentFile

from labeling.models import Project, Role
from predictions.model_cache import ModelOutput
from predictions.services.predict import CheckedImage, score_output, store_prediction, target_for
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.predictions.test_ranking import direction
from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_box_found_one_way_round_only_comes_first_with_its_reason(page, login):
    project = ProjectFactory(kind=Project.Kind.DETECTION, name="Cars")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    tag = TagFactory(project=project, name="car")
    iteration = make_iteration(project, tags=("car",), metrics={"map": 0.95})
    iteration.tags.update(tag=tag, image_count=40)
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    target = target_for(project, iteration)
    box = (0, 0.9, 0.2, 0.3, 0.25, 0.25)
    mirrored = (0, 0.9, 0.55, 0.3, 0.25, 0.25)  # the same box, found in the mirror image

    def stored(seed: int, found_mirrored: list) -> int:
        output = ModelOutput(np.array([0.9], np.float32), [box], direction(seed), found_mirrored)
        data = make_image(40, 30, (seed * 20, 90, 140))
        checked = CheckedImage(data, hashlib.sha256(data).hexdigest(), "PNG", 40, 30)
        outcome = score_output(target, output)
        return store_prediction(target=target, image=checked, outcome=outcome).image_id

    for seed in range(3):
        stored(seed, [mirrored])
    one_way = stored(9, [])
    login(reviewer)
    page.goto(f"/projects/{project.id}/predictions/")
    thumbs = page.get_by_test_id("prediction-thumb")
    assert thumbs.count() == 4
    assert thumbs.first.get_attribute("data-image-id") == str(one_way)
    reason = thumbs.first.get_by_test_id("gain-reason")
    assert reason.is_visible()
    assert reason.inner_text() == (
        "Boxes disagree under flip; least sure box “car” 0.90 (threshold 0.50)."
    )
    if os.environ.get("LOUPE_SCREENSHOTS"):
        page.screenshot(
            path=os.path.join(os.environ["LOUPE_SCREENSHOTS"], "most-gain-detection.png")
        )
