"""Prediction test helpers: a really trained, published iteration and a live prediction key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from labeling.models import Project, Tag
from predictions.model_cache import model_cache
from predictions.services.keys import create_key
from tests.conftest import make_image
from tests.training.conftest import COLOURS, add_images
from tests.factories import TagFactory
from training.models import Iteration
from training.services.iterations import claim_iteration, start_iteration
from training.services.publishing import publish_iteration

RED, GREEN, BLUE = COLOURS[0], COLOURS[1], COLOURS[2]


@dataclass
class Trained:
    project: Project
    iteration: Iteration
    tags: list[Tag]
    key: str
    admin: Any

    def url(self, *, nostore: bool = False, name: str = "prod", kind: str = "classify",
            project_id: int | None = None) -> str:
        pid = project_id if project_id is not None else self.project.pk
        return f"/api/predict/{pid}/{kind}/iterations/{name}/image" + ("/nostore" if nostore else "")


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    # Training pushes progress to the channel layer; no Redis in these tests.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    model_cache().clear()


def train_iteration_now(project: Project, admin: Any) -> Iteration:
    """Start and run a quick training in this process through the training services."""
    from training.services.runner import train_iteration

    iteration = start_iteration(project=project, by=admin)
    claimed = claim_iteration(iteration.pk)
    assert claimed is not None
    train_iteration(claimed)
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.COMPLETED, iteration.failure_message
    return iteration


def build_colour_project(project: Project, names=("red", "green", "blue"), count: int = 6):
    tags = []
    for i, name in enumerate(names):
        tag = TagFactory(project=project, name=name)
        add_images(project, [tag], count, colour=COLOURS[i], seed=i)
        tags.append(tag)
    return tags


@pytest.fixture
def trained(project, users) -> Trained:
    admin = users["admin"]
    tags = build_colour_project(project)
    iteration = train_iteration_now(project, admin)
    publish_iteration(iteration=iteration, name="prod", by=admin)
    issued = create_key(project=project, name="tests", by=admin)
    return Trained(project, iteration, tags, issued.secret, admin)


def colour_png(colour, size: int = 40) -> bytes:
    return make_image(size, size, colour)
