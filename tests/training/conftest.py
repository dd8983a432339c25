"""Training test helpers: small real projects whose images are tiny generated pictures."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from labeling.models import Image, Project, Tag
from tests.conftest import make_image
from tests.factories import ImageFactory, ImageTagFactory, TagFactory

# Distinct, well separated colours: a frozen ImageNet backbone tells them apart easily.
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 60, 220), (230, 220, 30), (200, 40, 200)]


def add_images(
    project: Project,
    tags: Sequence[Tag],
    count: int,
    *,
    colour: tuple[int, int, int] | None = None,
    seed: int = 0,
    content: bytes | None = None,
) -> list[Image]:
    """`count` tagged training images of `project`, each a distinct tiny picture."""
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        base = colour or (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        jitter = tuple(min(255, max(0, c + rng.randrange(-25, 26))) for c in base)
        data = content if content is not None else make_image(32, 32, jitter)
        image = ImageFactory(
            project=project, content=data, width=32, height=32, is_tagged=bool(tags)
        )
        for tag in tags:
            ImageTagFactory(image=image, tag=tag)
        images.append(image)
    return images


@pytest.fixture(autouse=True)
def _feature_cache(settings, tmp_path):
    # A private feature cache per test: nothing learned in one test leaks into another.
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    settings.LOUPE_DETECTION_MAP_CACHE_DIR = tmp_path / "detection_maps"


@pytest.fixture
def build_dataset() -> Callable[..., list[Tag]]:
    """`build_dataset(project, {"red": 6, "green": 6})`: tags with that many images each."""

    def build(project: Project, counts: dict[str, int], *, negatives: int = 0) -> list[Tag]:
        tags = []
        for i, (name, count) in enumerate(counts.items()):
            tag = TagFactory(project=project, name=name)
            add_images(project, [tag], count, colour=COLOURS[i % len(COLOURS)], seed=i)
            tags.append(tag)
        if negatives:
            negative = TagFactory(project=project, name="Negative", kind=Tag.Kind.NEGATIVE)
            add_images(project, [negative], negatives, colour=(128, 128, 128), seed=99)
        return tags

    return build


def make_iteration(
    project: Project,
    *,
    number: int = 1,
    status: str = "completed",
    tags: Sequence[str] = ("cat", "dog"),
    rows: Sequence[tuple[Sequence[int], Sequence[float]]] = (),
    metrics: dict | None = None,
    **fields: object,
):
    """An iteration row as a finished training leaves it: tags, snapshot images and scores.

    `rows` is one (true tag indexes, scores) pair per scored image; each gets a real image.
    """
    from training.models import Iteration, IterationImage, IterationScore, IterationTag
    from training.services.iterations import backbone_for

    iteration = Iteration.objects.create(
        project=project,
        number=number,
        name=f"Iteration {number}",
        status=status,
        backbone=backbone_for(project),
        is_multilabel=not project.is_multiclass,
        image_count=len(rows),
        metrics=metrics
        if metrics is not None
        else {"precision": 0.9, "recall": 0.8, "map": 0.85, "per_tag": []},
        **fields,
    )
    for index, name in enumerate(tags):
        IterationTag.objects.create(
            iteration=iteration,
            name=name,
            index=index,
            image_count=sum(index in labels for labels, _ in rows),
        )
    for i, (labels, scores) in enumerate(rows):
        image = ImageFactory(project=project)
        snapshot = IterationImage.objects.create(
            iteration=iteration,
            image=image,
            sha256=image.sha256,
            file_name=image.file.name,
            original_name=image.original_name,
            labels=list(labels),
            is_negative=not labels,
        )
        IterationScore.objects.create(
            iteration=iteration, iteration_image=snapshot, fold=i % 5, scores=list(scores)
        )
    return iteration
