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
