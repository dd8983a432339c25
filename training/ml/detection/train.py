"""Detector training inside a wall-clock budget.

Default recipe (measured in bench/RESULTS.md): the backbone stays frozen and each training image
is pushed through it once per cached view (cached.py), within a preparation deadline
(prepare.py: training starts on the images ready by then), then the FPN and head train for as
many epochs as the budget allows. ``TrainOptions(frozen_backbone=False)`` fine-tunes end to end
instead (backbone blocks from ``DetectorConfig.trainable_from_block`` on, at a tenth of the
head's learning rate, on cached views of the frozen stem and early blocks' output): about 5x
fewer epochs a minute on a CPU, and at a 10-minute budget on a project-shaped set it scored
below the frozen recipe (held-out mAP@0.5 0.917 vs 0.953, bench/detection_recipes.py), which
is why quick and advanced detection training both keep the backbone frozen. Both use AdamW, a
linear warm-up then cosine decay over the *time* budget (a slow machine still anneals instead of
being cut off at full rate), gradient clipping, augment.py's box-aware augmentation and
multi-scale resizing.

The held-out split (~20%, stratified by tag) is scored once, with the final weights: choosing an
epoch by held-out mAP would bias the very figure we report, so ``best_epoch == epochs``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from ..data import ImageRef, read_bytes
from ..detection_metrics import Detection
from ..device import Precision, precision_for, resolve_device, to_device
from ..errors import BudgetExhausted, Cancelled, DatasetTooSmall, TrainingDiverged
from ..preprocessing import load_rgb
from ..seeding import seed_everything
from .augment import AugmentConfig, NormalizedBox, TrainAugment, to_pixel_boxes
from .cached import CachedView, cached_losses
from .evaluate import detect, holdout_split, inference_size
from .model import Detector, DetectorArtifact, DetectorConfig, build_detector, train_mode
from .prepare import BodyFn, Deadlines, MapStore, Prepared, body_engine, prepare_views

ProgressFn = Callable[[str, float], None]

# Inference costs about this share of a training step per image (forward only, no loss); used
# to reserve budget for scoring the held-out split. Measured 0.25-0.35 here; rounded up.
_INFERENCE_COST_RATIO = 0.5
_WARMUP_STEPS = 30
_GRAD_CLIP_NORM = 10.0


def _ignore_progress(phase: str, fraction: float) -> None:
    return None


def _never_stop() -> bool:
    return False


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (defaults tuned by bench/detection.py on a 2-core CPU)."""

    batch_size: int = 4
    lr: float = 1e-3  # head and FPN; the backbone gets backbone_lr_ratio x this
    backbone_lr_ratio: float = 0.1
    weight_decay: float = 1e-4
    holdout_fraction: float = 0.2
    max_epochs: int = 200
    # Train the FPN and head on cached backbone maps (see cached.py); False fine-tunes end to
    # end, about 5x fewer epochs a minute on a CPU (bench/detection_recipes.py).
    frozen_backbone: bool = True
    # End to end: the frozen stem and early blocks run once per cached view, and each step
    # trains the later blocks, FPN and head on those maps (cached.py). False decodes, augments
    # and runs the whole network for every image at every step (the recipe before issue 15,
    # kept for bench/detection_recipes.py's comparison).
    cached_prefix: bool = True
    cached_views: int = 3  # view 0 plain, the rest augmented
    max_cache_share: float = 0.4  # extra views stop once caching would pass this budget share
    # Plain views stop at this share of the budget left after the scoring reserve: training
    # starts on what is ready rather than spending the budget on preparation alone.
    max_prepare_share: float = 0.6
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class DetectorResult:
    state: dict[str, torch.Tensor]  # detector state_dict of the returned weights
    holdout_index: np.ndarray  # (M,) int64 indices into refs of the held-out images
    holdout_detections: list[list[Detection]]  # per held-out image: (tag, p, l, t, w, h)
    epochs: int  # full passes over the prepared training images (a last partial one is not counted)
    best_epoch: int  # epoch of the returned weights: the last, since none is picked by score
    steps: int = 0
    # Mean training loss of each full epoch (augmented views): the only per-epoch figure, since
    # the held-out split is scored once, at the end.
    epoch_losses: tuple[float, ...] = ()
    config: DetectorConfig = field(default_factory=DetectorConfig)
    trained_images: int = 0  # training images with a prepared view (all, when none was cut)
    training_images: int = 0  # images in the training split
    maps_loaded: int = 0  # plain views loaded from the map store instead of computed
    # preparing_s, training_s, scoring_s, prepare_per_image_s (computed views only, else 0)
    timings: dict[str, float] = field(default_factory=dict)

    def to_artifact(self, *, backbone: str, num_tags: int) -> DetectorArtifact:
        """The trained detector as an artifact for save_detector_artifact / DetectorPredictor."""
        return DetectorArtifact(
            backbone=backbone, num_tags=num_tags, config=self.config, state=self.state
        )


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
    loop = _Loop(time.monotonic(), budget_s, on_progress, should_stop)
    rng = seed_everything(seed)
    train_index, holdout_index = _split(boxes, num_tags, options, rng)
    on_progress("preparing", 0.0)
    # Decoded (and shrunk to inference size) now, so an unreadable held-out image fails the
    # run before the budget is spent rather than after.
    holdout_images = [_inference_image(refs[i], config) for i in holdout_index]
    model = _build_model(backbone, num_tags, config, options, target)
    loop.measure_scoring(model, holdout_images, config)
    source = _training_source(
        model, refs, boxes, train_index, rng, seed, config, options, loop, map_store, target
    )
    loop.mark_training()
    trained = _train_epochs(
        model, source.step, source.trained_on, rng, options, loop, precision_for(target)
    )
    _require_one_pass(trained, source, loop)
    on_progress("evaluating", 0.0)
    detections, timings = _score_holdout(model, holdout_images, config, loop, source.prepared)
    on_progress("done", 1.0)
    return _result(model, config, train_index, holdout_index, source, trained, detections, timings)


@dataclass(frozen=True)
class _Source:
    """Where training batches come from, and which images they cover."""

    step: _Step
    trained_on: np.ndarray  # (K,) indices into refs of the images training sees
    prepared: Prepared  # the cached views' bookkeeping (empty for the legacy end-to-end recipe)


@dataclass(frozen=True)
class _Trained:
    epochs: int  # full passes over `trained_on`
    steps: int
    epoch_losses: list[float]  # mean training loss of each full epoch


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


def _training_source(
    model: Detector,
    refs: Sequence[ImageRef],
    boxes: Sequence[Sequence[NormalizedBox]],
    train_index: np.ndarray,
    rng: np.random.Generator,
    seed: int,
    config: DetectorConfig,
    options: TrainOptions,
    loop: _Loop,
    map_store: MapStore | None,
    device: torch.device,
) -> _Source:
    """Cached views of the training images prepared by the deadline: backbone maps (frozen
    backbone) or the frozen prefix's maps (end to end); or, for the legacy end-to-end recipe,
    the images themselves, decoded and augmented at every step."""
    augment = TrainAugment(options.augment)
    if not options.frozen_backbone and not options.cached_prefix:
        prepared = Prepared(wanted=len(train_index))
        return _Source(_ImageStep(model, refs, boxes, augment), train_index, prepared)
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
    step = _CachedStep(model, prepared.views, rng, from_block=from_block)
    return _Source(step, trained_on, prepared)


def _prefix_engine(model: Detector, block: int, device: torch.device) -> BodyFn:
    backbone = model.backbone
    return lambda batch: backbone.prefix(batch.to(device), block)


def _require_one_pass(trained: _Trained, source: _Source, loop: _Loop) -> None:
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
    loop: _Loop,
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
    source: _Source,
    trained: _Trained,
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


def _prepare(
    model: Detector,
    refs: Sequence[ImageRef],
    boxes: Sequence[Sequence[NormalizedBox]],
    order: np.ndarray,
    augment: TrainAugment,
    config: DetectorConfig,
    options: TrainOptions,
    loop: _Loop,
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


def _train_epochs(
    model: Detector,
    step: _Step,
    train_index: np.ndarray,
    rng: np.random.Generator,
    options: TrainOptions,
    loop: _Loop,
    precision: Precision,
) -> _Trained:
    """Full epochs, steps and mean loss per full epoch, until the budget or the epoch cap."""
    optimizer = _optimizer(model, options)
    scaler = precision.scaler()
    steps = epochs = 0
    epoch_losses: list[float] = []
    planned = options.max_epochs  # nothing measured yet: the cap
    for epoch in range(1, options.max_epochs + 1):
        order = rng.permutation(train_index)
        loss_sum = 0.0
        epoch_started = time.monotonic()
        # A last, partial epoch may start when fewer epochs were planned: it reads "epoch 4/4".
        phase = f"epoch {epoch}/{max(planned, epoch)}"
        for chunk in _chunks(order, options.batch_size):
            loop.check_stop()
            if loop.out_of_time():
                return _Trained(epochs, steps, epoch_losses)
            step_started = time.monotonic()
            _set_lr(optimizer, step=steps, fraction=loop.fraction())
            train_mode(model)
            loss = _step(model, step, chunk, optimizer, precision, scaler)
            steps += 1
            loss_sum += loss * len(chunk)
            loop.record_step(time.monotonic() - step_started, len(chunk), phase)
        epochs = epoch
        epoch_losses.append(loss_sum / len(order))
        epoch_s = time.monotonic() - epoch_started
        loop.after_epoch(epoch)
        planned = loop.planned_epochs(epoch, epoch_s, options.max_epochs)
    return _Trained(epochs, steps, epoch_losses)


def _step(
    model: Detector,
    step: _Step,
    chunk: np.ndarray,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    scaler: torch.amp.GradScaler,
) -> float:
    with precision.autocast():
        losses = step.losses(chunk)
    total = torch.zeros((), device=precision.device)
    loss = sum((value.float() for value in losses.values()), total)
    if not torch.isfinite(loss):
        raise TrainingDiverged("The training loss became NaN or infinite.")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(model.parameters(), _GRAD_CLIP_NORM)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


class _Step(Protocol):
    def losses(self, chunk: np.ndarray) -> dict[str, torch.Tensor]: ...


class _ImageStep:
    """End-to-end: decode, augment, and run the whole detector."""

    def __init__(
        self,
        model: Detector,
        refs: Sequence[ImageRef],
        boxes: Sequence[Sequence[NormalizedBox]],
        augment: TrainAugment,
    ) -> None:
        self.model, self.refs, self.boxes, self.augment = model, refs, boxes, augment

    def losses(self, chunk: np.ndarray) -> dict[str, torch.Tensor]:
        images: list[torch.Tensor] = []
        targets: list[dict[str, torch.Tensor]] = []
        for index in chunk.tolist():
            image, moved, labels = self.augment(*_decoded(self.refs[index], self.boxes[index]))
            images.append(TF.to_dtype(image, torch.float32, scale=True))
            targets.append({"boxes": moved.as_subclass(torch.Tensor), "labels": labels})
        device = next(self.model.parameters()).device
        images = [to_device(image, device) for image in images]
        targets = [{key: value.to(device) for key, value in t.items()} for t in targets]
        losses: dict[str, torch.Tensor] = self.model(images, targets)
        return losses


class _CachedStep:
    """A random cached view of each image through the FPN and head (and, from ``from_block``
    on, the backbone's trainable blocks)."""

    def __init__(
        self,
        model: Detector,
        views: dict[int, list[CachedView]],
        rng: np.random.Generator,
        *,
        from_block: int | None,
    ) -> None:
        self.model, self.views, self.rng, self.from_block = model, views, rng, from_block

    def losses(self, chunk: np.ndarray) -> dict[str, torch.Tensor]:
        picked = []
        for index in chunk.tolist():
            options = self.views[index]
            picked.append(options[int(self.rng.integers(len(options)))])
        return cached_losses(self.model, picked, from_block=self.from_block)


class _Loop:
    """Tracks the budget: training stops early enough to score the held-out split in time."""

    def __init__(
        self,
        started: float,
        budget_s: float,
        on_progress: ProgressFn,
        should_stop: Callable[[], bool],
    ) -> None:
        self.started = started
        self.budget_s = budget_s
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.holdout_count = 0
        self.inference_s: float | None = None  # measured per-image scoring time, if known
        self._probe: tuple[Detector, list[Image.Image], DetectorConfig] | None = None
        self.per_image_s = 0.0  # running mean training time per image
        self.images = 0
        self._train_start: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_stop(self) -> None:
        if self.should_stop():
            raise Cancelled("Training was cancelled.")

    def measure_scoring(
        self, model: Detector, holdout_images: Sequence[Image.Image], config: DetectorConfig
    ) -> None:
        """Time the detector on a held-out image: what scoring each of them will cost. The
        first call pays one-time costs (allocations, kernel choices) several times over a
        warm call's, so the second call is the one measured."""
        self.holdout_count = len(holdout_images)
        self._probe = (model, list(holdout_images[-2:]), config)
        if holdout_images:
            detect(model, holdout_images[:1], config)
            started = time.monotonic()
            detect(model, holdout_images[-1:], config)
            self.inference_s = time.monotonic() - started

    def after_epoch(self, epoch: int) -> None:
        """Measure scoring again once the detector has trained an epoch: a trained head keeps
        more candidate boxes above the score threshold than a fresh one, and their
        post-processing costs more (the 600 s bench overran by 17 s with the first figure)."""
        if epoch != 1 or self._probe is None or not self._probe[1]:
            return
        model, images, config = self._probe
        started = time.monotonic()
        detect(model, images, config)
        measured = (time.monotonic() - started) / len(images)
        self.inference_s = max(self.inference_s or 0.0, measured)

    def planned_epochs(self, epoch: int, epoch_s: float, max_epochs: int) -> int:
        """Epochs the budget buys at the pace of the last one, capped: progress shows
        "epoch 3/7" rather than the cap (the budget, not the cap, usually ends training)."""
        left_s = max(self.budget_s - self.elapsed() - self.reserve_s(), 0.0)
        return max(epoch, min(max_epochs, epoch + int(left_s // max(epoch_s, 1e-6))))

    def reserve_s(self) -> float:
        per_image = self.inference_s
        if per_image is None:
            per_image = self.per_image_s * _INFERENCE_COST_RATIO
        # Margin for load swings on a shared machine: the 600 s bench overran by 3 s at 1.2x.
        return self.holdout_count * per_image * 1.5 + 2.0

    def mark_training(self) -> None:
        self._train_start = time.monotonic()

    def preparing_s(self) -> float:
        end = self._train_start if self._train_start is not None else time.monotonic()
        return end - self.started

    def training_s(self) -> float:
        return 0.0 if self._train_start is None else time.monotonic() - self._train_start

    def spent_s(self) -> dict[str, float]:
        """Where the budget went, for a failure message."""
        return {
            "preparing images": self.preparing_s(),
            "training": self.training_s(),
            "held back for scoring": self.reserve_s(),
        }

    def fraction(self) -> float:
        if self._train_start is None:
            self._train_start = time.monotonic()
        budget = self.budget_s - (self._train_start - self.started) - self.reserve_s()
        return min(1.0, (time.monotonic() - self._train_start) / max(budget, 1e-6))

    def out_of_time(self) -> bool:
        return self.elapsed() + self.reserve_s() >= self.budget_s

    def record_step(self, seconds: float, images: int, phase: str) -> None:
        self.per_image_s = (self.per_image_s * self.images + seconds) / (self.images + images)
        self.images += images
        self.on_progress(phase, self.fraction())


def _optimizer(model: Detector, options: TrainOptions) -> torch.optim.Optimizer:
    backbone = [p for p in model.backbone.body.parameters() if p.requires_grad]
    backbone_ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": backbone, "lr": options.lr * options.backbone_lr_ratio},
            {"params": rest, "lr": options.lr},
        ],
        weight_decay=options.weight_decay,
    )
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def _set_lr(optimizer: torch.optim.Optimizer, *, step: int, fraction: float) -> None:
    warmup = min(1.0, (step + 1) / _WARMUP_STEPS)
    cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * warmup * max(cosine, 0.01)


def _chunks(order: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), size):
        yield order[start : start + size]


def _decoded(
    ref: ImageRef, boxes: Sequence[NormalizedBox]
) -> tuple[torch.Tensor, tv_tensors.BoundingBoxes, torch.Tensor]:
    """uint8 (3, H, W) image, its boxes in pixels and their labels."""
    pil = _open_rgb(ref)
    width, height = pil.size
    xyxy, labels = to_pixel_boxes(boxes, width, height)
    return (
        TF.pil_to_tensor(pil),
        tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(height, width)),
        labels,
    )


def _inference_image(ref: ImageRef, config: DetectorConfig) -> Image.Image:
    image = _open_rgb(ref)
    size = inference_size(*image.size, config)
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def _open_rgb(ref: ImageRef) -> Image.Image:
    data = read_bytes(ref)
    return load_rgb(data, key=ref.key)


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
