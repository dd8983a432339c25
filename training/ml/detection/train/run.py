"""train_detector: validate, split, prepare, train within the budget, score the held-out split."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ...data import ImageRef
from ...detection_metrics import Detection
from ...device import precision_for, resolve_device
from ...errors import BudgetExhausted, DatasetTooSmall
from ...seeding import seed_everything
from ..augment import NormalizedBox
from ..evaluate import detect, holdout_split
from ..model import Detector, DetectorConfig, build_detector
from ..prepare import MapStore, Prepared
from .clock import BudgetClock
from .epochs import Trained, train_epochs
from .images import inference_image
from .options import DetectorResult, ProgressFn, TrainOptions
from .source import Source, training_source


def _ignore_progress(phase: str, fraction: float) -> None:
    return None


def _never_stop() -> bool:
    return False


def train_detector(
    refs: Sequence[ImageRef],
    boxes: Sequence[Sequence[NormalizedBox]],
    *,
    num_tags: int,
    backbone: str,
    budget_s: float,
    seed: int = 0,
    on_progress: ProgressFn = _ignore_progress,
    should_stop: Callable[[], bool] = _never_stop,
    config: DetectorConfig = DetectorConfig(),
    options: TrainOptions = TrainOptions(),
    map_store: MapStore | None = None,
    device: str = "auto",
) -> DetectorResult:
    """Train a detector on ``refs`` within ``budget_s`` seconds of wall-clock time.

    ``boxes[i]`` lists image i's boxes as (tag index, left, top, width, height), normalised to
    0..1; an image with none is a negative (it teaches the detector what not to fire on).
    With the backbone frozen, training starts on the images prepared by the preparation
    deadline (prepare.py); ``map_store`` keeps their plain-view maps for the next run.
    Raises BudgetExhausted only when not one pass over the prepared images fits (its
    ``spent_s`` says where the time went), TrainingDiverged on a non-finite loss,
    DatasetCorrupt (naming the image), DatasetTooSmall, Cancelled (``should_stop``),
    DeviceUnavailable. On CUDA (``device``) steps run under mixed precision (device.py).
    """
    _validate(refs, boxes, num_tags=num_tags, budget_s=budget_s)
    target = resolve_device(device)
    loop = BudgetClock(time.monotonic(), budget_s, on_progress, should_stop)
    rng = seed_everything(seed)
    train_index, holdout_index = _split(boxes, num_tags, options, rng)
    on_progress("preparing", 0.0)
    # Decoded (and shrunk to inference size) now, so an unreadable held-out image fails the
    # run before the budget is spent rather than after.
    holdout_images = [inference_image(refs[i], config) for i in holdout_index]
    model = _build_model(backbone, num_tags, config, options, target)
    loop.measure_scoring(model, holdout_images, config)
    source = training_source(
        model, refs, boxes, train_index, rng, seed, config, options, loop, map_store, target
    )
    loop.mark_training()
    trained = train_epochs(
        model, source.step, source.trained_on, rng, options, loop, precision_for(target)
    )
    _require_one_pass(trained, source, loop)
    on_progress("evaluating", 0.0)
    detections, timings = _score_holdout(model, holdout_images, config, loop, source.prepared)
    on_progress("done", 1.0)
    return _result(model, config, train_index, holdout_index, source, trained, detections, timings)


def _build_model(
    backbone: str,
    num_tags: int,
    config: DetectorConfig,
    options: TrainOptions,
    device: torch.device,
) -> Detector:
    """A fresh detector on `device`, its backbone body frozen when the options ask for it."""
    model = build_detector(backbone, num_tags, config).to(device)
    if options.frozen_backbone:
        model.backbone.body.requires_grad_(False)
    return model


def _require_one_pass(trained: Trained, source: Source, loop: BudgetClock) -> None:
    """Raise BudgetExhausted, saying where the time went, when not one epoch finished."""
    if trained.epochs == 0:
        raise BudgetExhausted(
            f"The budget of {loop.budget_s:g} s ran out before one pass over the "
            f"{len(source.trained_on)} prepared training images; choose a larger budget or "
            "fewer images.",
            spent_s=loop.spent_s(),
        )


def _score_holdout(
    model: Detector,
    holdout_images: Sequence[Image.Image],
    config: DetectorConfig,
    loop: BudgetClock,
    prepared: Prepared,
) -> tuple[list[list[Detection]], dict[str, float]]:
    """The held-out images' detections with the final weights, and the run's timings (s)."""
    training_s = loop.training_s()
    scoring_started = time.monotonic()
    detections = detect(model, holdout_images, config)
    timings = {
        "preparing_s": loop.preparing_s(),
        "training_s": training_s,
        "scoring_s": time.monotonic() - scoring_started,
        "prepare_per_image_s": prepared.per_image_s,
    }
    return detections, timings


def _result(
    model: Detector,
    config: DetectorConfig,
    train_index: np.ndarray,
    holdout_index: np.ndarray,
    source: Source,
    trained: Trained,
    detections: list[list[Detection]],
    timings: dict[str, float],
) -> DetectorResult:
    """The result with a CPU copy of the final weights (best_epoch: the last, none is picked)."""
    state = {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}
    return DetectorResult(
        state=state,
        holdout_index=holdout_index.astype(np.int64),
        holdout_detections=detections,
        epochs=trained.epochs,
        best_epoch=trained.epochs,
        steps=trained.steps,
        epoch_losses=tuple(trained.epoch_losses),
        config=config,
        trained_images=len(source.trained_on),
        training_images=len(train_index),
        maps_loaded=source.prepared.loaded,
        timings=timings,
    )


def _split(
    boxes: Sequence[Sequence[NormalizedBox]],
    num_tags: int,
    options: TrainOptions,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    train_index, holdout_index = holdout_split(
        boxes, num_tags=num_tags, fraction=options.holdout_fraction, rng=rng
    )
    if not any(boxes[i] for i in train_index) or not any(boxes[i] for i in holdout_index):
        raise DatasetTooSmall(
            "Detection training needs boxes on at least 5 images, so that some can be held out "
            "to measure the model."
        )
    return train_index, holdout_index


def _validate(
    refs: Sequence[ImageRef],
    boxes: Sequence[Sequence[NormalizedBox]],
    *,
    num_tags: int,
    budget_s: float,
) -> None:
    if len(refs) != len(boxes):
        raise ValueError(f"refs has {len(refs)} images but boxes has {len(boxes)} entries.")
    if num_tags < 1:
        raise ValueError(f"num_tags must be at least 1, got {num_tags}.")
    if not budget_s > 0:
        raise BudgetExhausted("The time budget must be positive to train at all.")
    for index, image_boxes in enumerate(boxes):
        for box in image_boxes:
            tag, left, top, width, height = box
            inside = (
                left >= 0 and top >= 0 and left + width <= 1 + 1e-6 and top + height <= 1 + 1e-6
            )
            if not 0 <= int(tag) < num_tags or not (width > 0 and height > 0 and inside):
                raise ValueError(
                    f"Box {box!r} of image {index} must be (tag in [0, {num_tags}), left, top, "
                    "width, height) with a positive size inside the unit square."
                )
