"""The budget clock: training stops early enough to score the held-out split in time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from PIL import Image

from ...errors import Cancelled
from ..evaluate import detect
from ..model import Detector, DetectorConfig
from .options import ProgressFn

# Inference costs about this share of a training step per image (forward only, no loss); used
# to reserve budget for scoring the held-out split. Measured 0.25-0.35 here; rounded up.
_INFERENCE_COST_RATIO = 0.5


class BudgetClock:
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
