"""The epoch loop: AdamW, warm-up then cosine learning rate over the time budget, clipping."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ...device import Precision
from ...errors import TrainingDiverged
from ..model import Detector, train_mode
from .clock import BudgetClock
from .options import TrainOptions
from .steps import Step

_WARMUP_STEPS = 30
_GRAD_CLIP_NORM = 10.0


@dataclass(frozen=True)
class Trained:
    epochs: int  # full passes over `trained_on`
    steps: int
    epoch_losses: list[float]  # mean training loss of each full epoch


def train_epochs(
    model: Detector,
    step: Step,
    train_index: np.ndarray,
    rng: np.random.Generator,
    options: TrainOptions,
    loop: BudgetClock,
    precision: Precision,
) -> Trained:
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
                return Trained(epochs, steps, epoch_losses)
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
    return Trained(epochs, steps, epoch_losses)


def _step(
    model: Detector,
    step: Step,
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
