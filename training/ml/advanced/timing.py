"""The budget clock and the seconds charged to each phase (FineTuneResult.spent_s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol


class _Phases(Protocol):
    """What the phase timers charge: a run's seconds per phase (run.Run is one)."""

    spent: dict[str, float]


@dataclass(frozen=True)
class Clock:
    started: float
    budget_s: float

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def add(run: _Phases, phase: str, seconds: float) -> None:
    run.spent[phase] = run.spent.get(phase, 0.0) + seconds


@contextmanager
def timed(run: _Phases, phase: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        add(run, phase, time.monotonic() - started)
