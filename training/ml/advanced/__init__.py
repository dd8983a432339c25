"""Advanced training: fine-tune the whole backbone with augmentation inside a time budget.

Recipe (LP-FT): first fit the quick linear head on frozen features and use it to initialise the
classifier, so fine-tuning starts from quick-training quality instead of a random head that
would wreck the pretrained features in the first steps; then train backbone + head with AdamW,
RandomResizedCrop / flip / TrivialAugmentWide, a cosine learning rate over the budget, and
BatchNorm statistics frozen (CPU batches are small). After every epoch the held-out split is
scored; the best checkpoint (lowest held-out loss, the linear-probe start counting as epoch 0)
is kept in memory, and training stops early after `patience` epochs without improvement.

Where a CPU epoch's time goes (FineTuneResult.spent_s, printed per phase by bench/fine_tuning.py):
the legacy recipe (FineTuneRecipe.legacy()) decodes and augments every image again each epoch in
PIL (hidden behind the model by a thread pool), runs forward and backward at the input size even
for 128 px images (three times the pixels), including the stem and first blocks, whose large
activations are costly on CPU, and decodes the held-out images again for every score. The
default FineTuneRecipe() decodes every image once into a uint8 cache at the input size,
freezes the stem and the first three blocks and computes their outputs once, augments in that
feature space (random resized crop and flip, which commute with the frozen convolutions up to
border effects; photometric jitter is the price), trains the rest channels-last with fused AdamW,
and scores the held-out split from its cached prefix at the serving resolution, so the checkpoint
is chosen on exactly what the Predictor computes. On the CPU a training step (16 images) cost
about a quarter of the legacy one (bench/RESULTS.md, issue 15). Training at the images' own
resolution (own_resolution=True: 128 px glyphs at 128 px, a third of the pixels) is cheaper
still but is opt-in: the Predictor serves at the input size, and on the glyph set that scale
mismatch cost 30-40 points of held-out accuracy in the first epochs. Threads are the caller's
(the worker runs one, device.torch_threads): two threads on a busy two-core machine made every
step several times slower for both recipes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..backbones import get_backbone
from ..data import ImageRef
from ..device import precision_for, resolve_device
from ..errors import BudgetExhausted
from ..features import FeatureCache
from ..quick import validate_training_inputs
from ..seeding import seed_everything
from .checkpoint import Best
from .linear_probe import linear_probe_start
from .loop import build_optimizer, train_epochs
from .model import Classifier
from .prefix_cache import cache_prefix, frozen_blocks
from .recipe import FineTuneRecipe, FineTuneResult
from .run import ProgressFn, Run
from .split import Data
from .timing import Clock, timed

__all__ = ["FineTuneRecipe", "FineTuneResult", "ProgressFn", "fine_tune"]


def _ignore_progress(phase: str, fraction: float) -> None:
    return None


def _never_stop() -> bool:
    return False


def fine_tune(
    refs: Sequence[ImageRef],
    targets: np.ndarray,
    *,
    multilabel: bool,
    backbone: str,
    budget_s: float,
    seed: int = 0,
    on_progress: ProgressFn = _ignore_progress,
    should_stop: Callable[[], bool] = _never_stop,
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    max_epochs: int = 30,
    patience: int = 4,
    lr: float = 3e-4,
    device: str = "auto",
    recipe: FineTuneRecipe | None = None,
) -> FineTuneResult:
    """Fine-tune `backbone` on `refs` within `budget_s` seconds of wall-clock time.

    Holds out a stratified ~1/5 (1/k when the smallest tag has fewer than 5 images) for early
    stopping and returns its scores. `cache` (optional) lets the linear-probe start reuse cached
    frozen embeddings. `device` ("auto", "cpu", "cuda"): on CUDA the steps run under mixed
    precision (device.py). Raises BudgetExhausted if not one epoch fits in the budget,
    TrainingDiverged on a non-finite loss, DatasetCorrupt, DatasetTooSmall, Cancelled,
    DeviceUnavailable. `recipe`: how epochs are run; None = FineTuneRecipe(), the cached recipe
    (FineTuneRecipe.legacy() is kept for comparison, bench/fine_tuning.py).
    """
    recipe = recipe or FineTuneRecipe()
    targets = _checked_targets(refs, targets, multilabel=multilabel, budget_s=budget_s)
    target = resolve_device(device)
    clock = Clock(time.monotonic(), budget_s)
    seed_everything(seed)
    data = Data.split(refs, targets, seed)
    on_progress("embedding", 0.0)
    model, best = linear_probe_start(
        target, refs, targets, data, backbone, multilabel, cache, should_stop
    )
    spent = _spent_on_linear_probe(clock)
    recipe = _place_model(model, recipe, data, backbone, target, on_progress)
    run = Run(
        model=model,
        data=data,
        backbone=backbone,
        multilabel=multilabel,
        clock=clock,
        optimizer=build_optimizer(model, lr, fused=recipe.fused_optimizer),
        batch_size=batch_size,
        max_epochs=max_epochs,
        on_progress=on_progress,
        should_stop=should_stop,
        precision=precision_for(target),
        recipe=recipe,
        spent=spent,
    )
    _cache_training_images(run)
    epochs_done = train_epochs(run, best, seed=seed, patience=patience)
    on_progress("done", 1.0)
    return _result(run, best, epochs_done)


def _checked_targets(
    refs: Sequence[ImageRef], targets: np.ndarray, *, multilabel: bool, budget_s: float
) -> np.ndarray:
    """`targets` as an (N, T) array, once refs, targets and the budget are known to be usable."""
    targets = np.asarray(targets)
    if len(refs) != targets.shape[0]:
        raise ValueError(f"refs has {len(refs)} images but targets has {targets.shape[0]} rows.")
    validate_training_inputs(np.zeros((len(refs), 1), dtype=np.float32), targets, multilabel)
    if budget_s <= 0:
        raise BudgetExhausted("The time budget must be positive to train at all.")
    return targets


def _spent_on_linear_probe(clock: Clock) -> dict[str, float]:
    """Seconds per phase so far; raises BudgetExhausted when the linear probe used the budget."""
    if clock.elapsed() > clock.budget_s:
        raise BudgetExhausted(
            f"The budget of {clock.budget_s:g} s ran out before the first training epoch could "
            "start; choose a larger budget.",
            spent_s={"linear-probe start": clock.elapsed()},
        )
    return {"linear-probe start": clock.elapsed()}


def _place_model(
    model: Classifier,
    recipe: FineTuneRecipe,
    data: Data,
    backbone: str,
    device: torch.device,
    on_progress: ProgressFn,
) -> FineTuneRecipe:
    """Move the model to `device`, freeze the recipe's prefix and set its memory layout; returns
    the recipe as it will run (streaming when the cache would not fit)."""
    model.to(device)
    if recipe.cached:
        on_progress("caching images", 0.0)
        blocks = frozen_blocks(model, recipe, data, backbone, device)
        if blocks is None:  # the cache would not fit: stream the images every epoch instead
            recipe = replace(recipe, cached=False, frozen_blocks=0)
        else:
            model.freeze_prefix(blocks)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    return recipe


def _cache_training_images(run: Run) -> None:
    """Decode the images and run the frozen prefix once, when the recipe caches."""
    if run.recipe.cached:
        with timed(run, "decoding and caching"):
            run.cached = cache_prefix(run)


def _result(run: Run, best: Best, epochs_done: int) -> FineTuneResult:
    """The best checkpoint, its held-out scores and where the time went."""
    train_size = run.cached.size if run.cached else get_backbone(run.backbone).input_size
    return FineTuneResult(
        best.state,
        run.data.holdout_index,
        best.scores,
        epochs_done,
        best.epoch,
        tuple(best.history),
        spent_s=dict(run.spent),
        train_size=train_size,
    )
