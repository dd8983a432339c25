"""Detector training's progress counts the epochs the budget buys at the measured pace ("epoch
3/7", which the progress display reads), not the epoch cap; the result keeps each epoch's loss."""

from __future__ import annotations

import re

import torch

from tests.ml.test_detection import TINY, _toy_dataset
from training.ml.detection import TrainOptions, train_detector


def test_progress_shows_the_epochs_planned_for_the_budget():
    refs, boxes = _toy_dataset()
    phases: list[str] = []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_detector(
            refs,
            boxes,
            num_tags=2,
            backbone="lite0",
            budget_s=6,
            seed=0,
            on_progress=lambda phase, fraction: phases.append(phase),
            config=TINY,
            options=TrainOptions(max_epochs=1000, lr=3e-3, batch_size=4),
        )
    finally:
        torch.set_num_threads(previous)

    counts = [
        tuple(map(int, m.groups())) for p in phases if (m := re.match(r"epoch (\d+)/(\d+)", p))
    ]
    assert counts[0] == (1, 1000)  # nothing measured yet: the cap
    assert 2 <= result.epochs < 1000  # the budget, not the cap, ended training
    later = [(epoch, planned) for epoch, planned in counts if epoch >= 2]
    assert all(epoch <= planned < 1000 for epoch, planned in later)
    # By the last full epoch the plan has converged on what the budget bought.
    last_plan = max(planned for epoch, planned in later if epoch == result.epochs)
    assert last_plan <= 2 * result.epochs + 1
    assert len(result.epoch_losses) == result.epochs
    assert result.best_epoch == result.epochs  # the last weights are kept, none picked by score
