"""Fixtures of the Custom Vision API tests: a published classifier and detector.

The classifier is the predictions tests' real red/green/blue model (Lite0 at 64 px, a quick
head). The detector is an untrained one (Lite0 FCOS at 64 px, score threshold 0): its boxes
are real model output through the real scoring and wire code, which is what these tests
check; how well a trained detector localizes is tests/ml/test_detection.py's subject.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.base import ContentFile

from labeling.models import Project, Tag
from predictions.model_cache import model_cache
from predictions.services.keys import create_key
from tests.factories import ProjectFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration  # noqa: F401
from training.models import Iteration
from training.services.publishing import publish_iteration


@dataclass
class Published:
    project: Project
    iteration: Iteration
    tags: list[Tag]
    key: str  # a project prediction key
    admin: Any


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    model_cache().clear()


@pytest.fixture
def classifier(project, users, colour_artifact) -> Published:  # noqa: F811
    admin = users["admin"]
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, colour_artifact)
    publish_iteration(iteration=iteration, name="prod", by=admin)
    return Published(
        project, iteration, tags, create_key(project=project, name="t", by=admin).secret, admin
    )


@pytest.fixture(scope="session")
def detector_artifact() -> bytes:
    from training.ml.detection.model import (
        DetectorArtifact,
        DetectorConfig,
        build_detector,
        save_detector_artifact,
    )

    config = DetectorConfig(image_size_px=64, max_size_px=96, score_threshold=0.0)
    model = build_detector("lite0", 2, config)
    buffer = io.BytesIO()
    save_detector_artifact(
        DetectorArtifact(backbone="lite0", num_tags=2, config=config, state=model.state_dict()),
        buffer,
    )
    return buffer.getvalue()


@pytest.fixture
def detector(users, detector_artifact) -> Published:
    from tests.factories import MembershipFactory
    from tests.training.conftest import make_iteration

    admin = users["admin"]
    project = ProjectFactory(kind=Project.Kind.DETECTION, owner=admin)
    MembershipFactory(project=project, user=admin, role="admin")
    tags = [TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")]
    iteration = make_iteration(project, tags=("cat", "dog"))
    for it_tag, tag in zip(iteration.tags.order_by("index"), tags, strict=True):
        it_tag.tag = tag
        it_tag.save(update_fields=["tag"])
    iteration.backbone = "lite0"
    iteration.artifact.save("detector.pt", ContentFile(detector_artifact), save=False)
    iteration.save(update_fields=["artifact", "backbone"])
    publish_iteration(iteration=iteration, name="boxes", by=admin)
    return Published(
        project, iteration, tags, create_key(project=project, name="t", by=admin).secret, admin
    )
