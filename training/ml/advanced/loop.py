"""The epoch loop: cosine learning rate, held-out scoring after every epoch, the best checkpoint,
early stopping and the time budget."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..backbones import get_backbone
from ..device import to_device
from ..errors import BudgetExhausted, Cancelled, TrainingDiverged
from ..preprocessing import train_transform
from .checkpoint import Best
from .model import Classifier, classifier_loss
from .prefix_cache import cached_batches, evaluate_cached
from .run import Run
from .streaming import evaluate, timed_batches, train_batches
from .timing import add, timed


def build_optimizer(model: Classifier, lr: float, *, fused: bool = False) -> torch.optim.Optimizer:
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": trainable, "lr": lr},
            {"params": model.head.parameters(), "lr": lr * 10},
        ],
        weight_decay=1e-4,
        # One fused kernel over all parameters instead of a Python loop over ~150 tensors.
        fused=fused or None,
    )
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def train_epochs(run: Run, best: Best, *, seed: int, patience: int) -> int:
    """Epochs until the budget, the epoch cap or early stopping; returns the epochs completed."""
    transform = train_transform(get_backbone(run.backbone))
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    epochs_done = 0
    epoch_seconds = 0.0
    for epoch in range(1, run.max_epochs + 1):
        if epochs_done and run.clock.elapsed() + epoch_seconds > run.clock.budget_s:
            break  # the next epoch would overrun the budget: keep what we have
        epoch_started = time.monotonic()
        order = rng.permutation(len(run.data.train_refs))
        batches = _epoch_batches(run, order, generator, transform)
        if not _train_one_epoch(run, epoch, batches, run.planned_epochs):
            if epochs_done == 0:
                raise BudgetExhausted(
                    f"The budget of {run.clock.budget_s:g} s ran out before the first training "
                    "epoch finished; choose a larger budget.",
                    spent_s={"the first epoch": run.clock.elapsed()},
                )
            break  # the budget ran out mid-epoch (after at least one full epoch)
        with timed(run, "held-out scoring"):
            holdout_loss, scores = evaluate_cached(run) if run.cached else evaluate(run)
        if not math.isfinite(holdout_loss):
            raise TrainingDiverged("The held-out loss became NaN or infinite.")
        epochs_done = epoch
        epoch_seconds = time.monotonic() - epoch_started
        # What the budget buys at this pace, shown as "epoch 3/7" rather than the cap.
        left = int((run.clock.budget_s - run.clock.elapsed()) // max(epoch_seconds, 1e-6))
        run.planned_epochs = max(epoch, min(run.max_epochs, epoch + left))
        with timed(run, "checkpointing"):
            best.offer(epoch, holdout_loss, scores, run.model)
        if epoch - best.epoch >= patience:
            break
    return epochs_done


def _epoch_batches(
    run: Run,
    order: np.ndarray,
    generator: torch.Generator,
    transform: Callable[..., torch.Tensor],
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The training split's augmented batches in `order`: (indices into the split, (B, C, h, w)
    float32), from the cache when there is one, else decoded from the images."""
    if run.cached is not None:
        return cached_batches(run, order, generator)
    return timed_batches(
        run,
        train_batches(
            run.data.train_refs,
            order,
            run.batch_size,
            get_backbone(run.backbone).input_size,
            transform,
        ),
    )


def _train_one_epoch(
    run: Run,
    epoch: int,
    batches: Iterator[tuple[np.ndarray, torch.Tensor]],
    planned: int,
) -> bool:
    """One pass over the training split; False when the budget ran out before its end."""
    model, clock = run.model, run.clock
    model.train_with_frozen_norm()
    scaler = run.precision.scaler()
    memory = torch.channels_last if run.recipe.channels_last else torch.contiguous_format
    for chunk, batch in batches:
        if run.should_stop():
            raise Cancelled("Training was cancelled.")
        elapsed = clock.elapsed()
        if elapsed > clock.budget_s:
            return False
        # Cosine decay over whichever runs out first: the time budget or the epoch cap.
        progress = min(1.0, max(elapsed / clock.budget_s, (epoch - 1) / run.max_epochs))
        for group in run.optimizer.param_groups:
            group["lr"] = group["base_lr"] * 0.5 * (1.0 + math.cos(math.pi * progress))
        targets = to_device(run.data.y_train[torch.from_numpy(chunk)], run.device)
        inputs = to_device(batch, run.device).contiguous(memory_format=memory)
        started = time.monotonic()
        with run.precision.autocast():
            logits = model.suffix(inputs)
        loss = classifier_loss(logits.float(), targets, run.multilabel)
        if not torch.isfinite(loss):
            raise TrainingDiverged("The training loss became NaN or infinite.")
        run.optimizer.zero_grad()
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        stepped = time.monotonic()
        scaler.step(run.optimizer)
        scaler.update()
        add(run, "forward and backward", stepped - started)
        add(run, "optimizer", time.monotonic() - stepped)
        run.on_progress(
            f"epoch {epoch}/{planned}", min(1.0, max(elapsed / clock.budget_s, progress))
        )
    return True
