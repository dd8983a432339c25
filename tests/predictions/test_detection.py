"""Detection predictions without a trained detector: crafted boxes through the real scoring,
storing and review services (the detector's own tests cover its forward pass)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from labeling.models import Project, Region
from predictions.model_cache import ModelOutput
from predictions.services.predict import CheckedImage, score_output, store_prediction, target_for
from tests.conftest import make_image
from tests.factories import ProjectFactory, TagFactory
from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db


def test_boxes_are_sorted_stored_and_prefilled_as_regions(client_for, users):
    project = ProjectFactory(kind=Project.Kind.DETECTION)
    from tests.factories import MembershipFactory

    MembershipFactory(project=project, user=users["reviewer"], role="reviewer")
    tags = [TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")]
    iteration = make_iteration(project, tags=("cat", "dog"))
    for it_tag, tag in zip(iteration.tags.order_by("index"), tags, strict=True):
        it_tag.tag = tag
        it_tag.save()
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    boxes = [(1, 0.3, 0.5, 0.5, 0.2, 0.2), (0, 0.9, 0.1, 0.1, 0.3, 0.4)]
    output = ModelOutput(np.array([0.9, 0.3], dtype=np.float32), boxes, np.ones(8, np.float32))
    target = target_for(project, iteration)
    outcome = score_output(target, output)
    assert [r["tagName"] for r in outcome.results] == ["cat", "dog"]
    assert outcome.results[0]["boundingBox"] == {
        "left": 0.1,
        "top": 0.1,
        "width": 0.3,
        "height": 0.4,
    }
    assert 0.0 < outcome.uncertainty <= 1.0
    data = make_image(20, 20)
    prediction = store_prediction(
        target=target,
        image=CheckedImage(data, hashlib.sha256(data).hexdigest(), "PNG", 20, 20),
        outcome=outcome,
    )
    client = client_for(users["reviewer"])
    response = client.post(
        reverse("predictions:prediction-review", args=[project.id]),
        {"image_ids": [prediction.image_id]},
    )
    assert response.status_code == 302
    # Only the box at or above the iteration's threshold (0.5) is pre-filled.
    regions = list(
        Region.objects.filter(image_id=prediction.image_id).values_list(
            "tag__name", "left", "top", "width", "height"
        )
    )
    assert regions == [("cat", 0.1, 0.1, 0.3, 0.4)]
    saved = client.post(
        reverse("predictions:prediction-promote", args=[project.id, prediction.image_id])
    )
    assert saved.status_code == 302
    assert project.images.training().filter(pk=prediction.image_id).exists()
