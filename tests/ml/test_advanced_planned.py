"""Fine-tuning's progress counts the epochs the budget buys at the measured pace, not the cap."""

from __future__ import annotations

import re

from tests.ml.conftest import photo_dataset
from training.ml.advanced import fine_tune
from training.ml.features import FeatureCache

CAP = 1_000_000


def test_progress_shows_the_epochs_planned_for_the_budget(
    tiny_backbone: str, cache: FeatureCache
) -> None:
    refs, targets = photo_dataset(per_class=5)
    phases: list[str] = []

    result = fine_tune(
        refs,
        targets,
        multilabel=False,
        backbone=tiny_backbone,
        budget_s=120,
        seed=0,
        cache=cache,
        batch_size=8,
        # A cap no budget of 120 s reaches (an epoch would have to take 0.12 ms), so the planned
        # count is the budget's, whatever this machine's speed.
        max_epochs=CAP,
        patience=1,
        on_progress=lambda phase, fraction: phases.append(phase),
    )

    counts = [
        tuple(map(int, m.groups())) for p in phases if (m := re.match(r"epoch (\d+)/(\d+)", p))
    ]
    assert counts[0] == (1, CAP)  # nothing measured yet: the cap
    later = [planned for epoch, planned in counts if epoch >= 2]
    if result.epochs >= 2:
        assert later and all(epoch_count < CAP for epoch_count in later)
        assert all(planned >= 2 for planned in later)
