"""Prediction test helpers: a really trained, published iteration and a live prediction key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from labeling.models import Project, Tag
from predictions.model_cache import model_cache
from predictions.services.keys import create_key
from tests.conftest import make_image
from tests.factories import TagFactory
from tests.training.conftest import COLOURS, add_images
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

    def url(
        self,
        *,
        nostore: bool = False,
        name: str = "prod",
        kind: str = "classify",
        project_id: int | None = None,
    ) -> str:
        pid = project_id if project_id is not None else self.project.pk
        suffix = "/nostore" if nostore else ""
        return f"/api/predict/{pid}/{kind}/iterations/{name}/image{suffix}"


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


TINY_BACKBONE = "lite0-64"


@pytest.fixture(scope="session")
def colour_artifact() -> bytes:
    """A real classifier for red/green/blue: Lite0's pretrained weights at 64 px (a tenth of the
    compute of 224 px, same code paths) and a head fitted by quick training on its embeddings."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    from training.ml.artifact import ClassifierArtifact, save_artifact
    from training.ml.backbones import BACKBONE_FOR_DOMAIN, get_backbone, register_backbone
    from training.ml.features import embed_pil, stock_engine
    from training.ml.preprocessing import PREPROCESSING_VERSION
    from training.ml.quick import train_quick

    compact = get_backbone(BACKBONE_FOR_DOMAIN["general_compact"])
    register_backbone(dataclasses.replace(compact, name=TINY_BACKBONE, input_size=64))
    rng = np.random.default_rng(0)
    images, targets = [], []
    for label, colour in enumerate((RED, GREEN, BLUE)):
        for _ in range(6):
            jitter = tuple(int(min(255, max(0, c + rng.integers(-25, 26)))) for c in colour)
            images.append(PILImage.new("RGB", (32, 32), jitter))
            targets.append(np.eye(3, dtype=np.float32)[label])
    features = embed_pil(stock_engine(TINY_BACKBONE), images, TINY_BACKBONE)
    result = train_quick(features, np.stack(targets), multilabel=False, n_folds=3)
    artifact = ClassifierArtifact.from_quick(
        result.head,
        backbone=TINY_BACKBONE,
        tag_keys=["red", "green", "blue"],
        preprocessing_version=PREPROCESSING_VERSION,
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


def colour_iteration(project: Project, tags: list[Tag], artifact: bytes, number: int = 1):
    """A completed iteration of `project` whose model file is `artifact`."""
    from django.core.files.base import ContentFile

    from tests.training.conftest import make_iteration

    iteration = make_iteration(project, number=number, tags=[t.name for t in tags])
    iteration.backbone = TINY_BACKBONE
    # 30 labels a tag and make_iteration's mAP of 0.85: a trained model whose doubts "Most gain"
    # puts first (predictions.services.ranking.model_signals).
    for it_tag, tag in zip(iteration.tags.order_by("index"), tags, strict=True):
        it_tag.tag = tag
        it_tag.image_count = 30
        it_tag.save(update_fields=["tag", "image_count"])
    iteration.artifact.save("model.pt", ContentFile(artifact), save=False)
    iteration.save(update_fields=["artifact", "backbone"])
    return iteration


@pytest.fixture
def trained(project, users, colour_artifact) -> Trained:
    admin = users["admin"]
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, colour_artifact)
    publish_iteration(iteration=iteration, name="prod", by=admin)
    issued = create_key(project=project, name="tests", by=admin)
    return Trained(project, iteration, tags, issued.secret, admin)


def colour_png(colour, size: int = 40) -> bytes:
    return make_image(size, size, colour)
