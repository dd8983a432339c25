"""The training images' source: views prepared within the preparation deadline, or the images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...data import ImageRef
from ..augment import NormalizedBox, TrainAugment
from ..model import Detector, DetectorConfig
from ..prepare import BodyFn, Deadlines, MapStore, Prepared, body_engine, prepare_views
from .clock import BudgetClock
from .options import TrainOptions
from .steps import CachedStep, ImageStep, Step


@dataclass(frozen=True)
class Source:
    """Where training batches come from, and which images they cover."""

    step: Step
    trained_on: np.ndarray  # (K,) indices into refs of the images training sees
    prepared: Prepared  # the cached views' bookkeeping (empty for the legacy end-to-end recipe)


def training_source(
    model: Detector,
    refs: Sequence[ImageRef],
    boxes: Sequence[Sequence[NormalizedBox]],
    train_index: np.ndarray,
    rng: np.random.Generator,
    seed: int,
    config: DetectorConfig,
    options: TrainOptions,
    loop: BudgetClock,
    map_store: MapStore | None,
    device: torch.device,
) -> Source:
    """Cached views of the training images prepared by the deadline: backbone maps (frozen
    backbone) or the frozen prefix's maps (end to end); or, for the legacy end-to-end recipe,
    the images themselves, decoded and augmented at every step."""
    augment = TrainAugment(options.augment)
    if not options.frozen_backbone and not options.cached_prefix:
        prepared = Prepared(wanted=len(train_index))
        return Source(ImageStep(model, refs, boxes, augment), train_index, prepared)
    from_block = None if options.frozen_backbone else config.trainable_from_block
    if from_block is None:
        body, store = body_engine(model, device=device), map_store
    else:
        # The map store keeps whole-backbone maps; prefix maps are cheap enough to recompute.
        body, store = _prefix_engine(model, from_block, device), None
    # Its own generator: the preparation order leaves the training's random stream as is.
    order = np.random.default_rng([seed, 1]).permutation(train_index)
    prepared = _prepare(model, refs, boxes, order, augment, config, options, loop, store, body)
    trained_on = np.asarray(sorted(prepared.views), dtype=np.int64)
    step = CachedStep(model, prepared.views, rng, from_block=from_block)
    return Source(step, trained_on, prepared)


def _prefix_engine(model: Detector, block: int, device: torch.device) -> BodyFn:
    backbone = model.backbone
    return lambda batch: backbone.prefix(batch.to(device), block)


def _prepare(
    model: Detector,
    refs: Sequence[ImageRef],
    boxes: Sequence[Sequence[NormalizedBox]],
    order: np.ndarray,
    augment: TrainAugment,
    config: DetectorConfig,
    options: TrainOptions,
    loop: BudgetClock,
    map_store: MapStore | None,
    body: BodyFn,
) -> Prepared:
    """Views of the training images in `order` (a random one: a set cut off by the deadline
    is a fair sample) within preparation's share of the budget (prepare.py)."""
    working_s = loop.budget_s - loop.reserve_s()
    deadlines = Deadlines(
        plain_views=options.max_prepare_share * working_s,
        extra_views=min(
            options.max_cache_share * loop.budget_s, options.max_prepare_share * working_s
        ),
    )
    return prepare_views(
        model,
        refs,
        boxes,
        order.tolist(),
        config=config,
        augment=augment,
        cached_views=options.cached_views,
        deadlines=deadlines,
        elapsed=loop.elapsed,
        on_progress=loop.on_progress,
        should_stop=loop.should_stop,
        body=body,
        store=map_store,
    )
