"""Tiny generated detection projects: grey noisy pictures with coloured squares as the objects."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image as PILImage

from labeling.models import Image, Project, Tag
from labeling.services.regions import ensure_negative_tag
from tests.factories import ImageFactory, ImageTagFactory, RegionFactory
from tests.training.conftest import COLOURS

SIZE_PX = 64


def boxed_picture(
    squares: Sequence[tuple[int, int, int, int]], *, seed: int
) -> tuple[bytes, list[tuple[int, float, float, float, float]]]:
    """A SIZE_PX square PNG with (colour index, x, y, side) squares on noise, and its boxes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(100, 156, size=(SIZE_PX, SIZE_PX, 3), dtype=np.uint8)
    boxes = []
    for colour, x, y, side in squares:
        pixels[y : y + side, x : x + side] = COLOURS[colour]
        boxes.append((colour, x / SIZE_PX, y / SIZE_PX, side / SIZE_PX, side / SIZE_PX))
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), boxes


def add_boxed_images(
    project: Project, tags: Sequence[Tag], per_tag: int, *, negatives: int = 0, seed: int = 0
) -> list[Image]:
    """`per_tag` images per tag, each with one square of the tag's colour (boxed as a Region),
    plus `negatives` empty pictures marked "No objects"."""
    rng = np.random.default_rng(seed)
    images = []
    for number in range(per_tag * len(tags) + negatives):
        squares = []
        if number < per_tag * len(tags):
            side = int(rng.integers(18, 30))
            x, y = (int(v) for v in rng.integers(0, SIZE_PX - side, size=2))
            squares.append((number % len(tags), x, y, side))
        content, boxes = boxed_picture(squares, seed=seed * 1000 + number)
        image = ImageFactory(
            project=project, content=content, width=SIZE_PX, height=SIZE_PX, is_tagged=True
        )
        for colour, left, top, width, height in boxes:
            RegionFactory(
                image=image, tag=tags[colour], left=left, top=top, width=width, height=height
            )
        if not boxes:
            ImageTagFactory(image=image, tag=ensure_negative_tag(project))
        images.append(image)
    return images


def make_detection_iteration(
    project: Project,
    *,
    tags: Sequence[str],
    rows: Sequence[tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]]],
    number: int = 1,
    **fields: object,
):
    """A completed detection iteration as training leaves it, from crafted held-out rows.

    `rows` is one (true boxes [tag, l, t, w, h], detections [tag, p, l, t, w, h]) pair per
    held-out image; each gets a real image. The stored metrics come from the same numbers.
    """
    from training.models import Iteration, IterationImage, IterationScore, IterationTag
    from training.services.detection_performance import detection_figures

    figures = detection_figures(
        [[tuple(b) for b in gt] for gt, _ in rows],
        [[tuple(d) for d in dets] for _, dets in rows],
        tag_names=list(tags),
        probability_threshold=0.5,
    )
    for index, row in enumerate(figures["per_tag"]):
        row["boxes"] = sum(1 for gt, _ in rows for box in gt if box[0] == index)
    iteration = Iteration.objects.create(
        project=project,
        number=number,
        name=f"Iteration {number}",
        backbone="lite0",
        budget_s=600,
        image_count=len(rows),
        metrics=figures,
        **{"status": Iteration.Status.COMPLETED, **fields},
    )
    for index, name in enumerate(tags):
        IterationTag.objects.create(
            iteration=iteration,
            name=name,
            index=index,
            image_count=sum(any(box[0] == index for box in gt) for gt, _ in rows),
        )
    for gt, dets in rows:
        image = ImageFactory(project=project, width=40, height=30)
        snapshot = IterationImage.objects.create(
            iteration=iteration,
            image=image,
            sha256=image.sha256,
            file_name=image.file.name,
            original_name=image.original_name,
            labels=sorted({int(box[0]) for box in gt}),
            is_negative=not gt,
            boxes=[list(box) for box in gt],
        )
        IterationScore.objects.create(
            iteration=iteration,
            iteration_image=snapshot,
            fold=-1,
            scores=[max([d[1] for d in dets if d[0] == t], default=0.0) for t in range(len(tags))],
            detections=[list(d) for d in dets],
        )
    return iteration


# Held-out rows crafted so that both sliders move the figures: duplicates and wrong boxes under
# probability 0.5, boxes overlapping their true box by 0.3-0.65, a negative image with a box,
# and two detections of equal probability competing for two true boxes (greedy order matters).
CRAFTED_TAGS = ("red", "blue")
CRAFTED_ROWS = [
    (
        [[0, 0.1, 0.1, 0.3, 0.3]],
        [
            [0, 0.9, 0.1, 0.1, 0.3, 0.3],
            [0, 0.4, 0.14, 0.12, 0.3, 0.3],
            [1, 0.35, 0.6, 0.6, 0.2, 0.2],
        ],
    ),
    (
        [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.1, 0.5, 0.3, 0.3]],
        [
            [0, 0.6, 0.53, 0.53, 0.2, 0.2],
            [1, 0.45, 0.12, 0.52, 0.3, 0.3],
            [1, 0.2, 0.2, 0.6, 0.3, 0.3],
        ],
    ),
    (
        [[1, 0.6, 0.1, 0.3, 0.2]],
        [[1, 0.7, 0.66, 0.14, 0.3, 0.2], [0, 0.55, 0.1, 0.7, 0.2, 0.2]],
    ),
    ([], [[0, 0.3, 0.4, 0.4, 0.2, 0.2]]),
    (
        [[0, 0.1, 0.1, 0.4, 0.4], [0, 0.2, 0.2, 0.4, 0.4]],
        [[0, 0.8, 0.15, 0.15, 0.4, 0.4], [0, 0.8, 0.2, 0.2, 0.4, 0.4]],
    ),
    ([[1, 0.05, 0.05, 0.5, 0.5]], [[1, 0.95, 0.05, 0.05, 0.5, 0.5]]),
]
