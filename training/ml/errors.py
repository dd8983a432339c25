"""Named failures of the ML core.

The Django side maps each class to an iteration failure reason, so the classes (not the messages)
are the stable interface. Messages are full sentences safe to show to a user.
"""

from __future__ import annotations


class MLError(Exception):
    """Base class of every failure the ML core reports on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DatasetCorrupt(MLError):
    """An image could not be read or decoded; `item_key` names it (its content hash)."""

    def __init__(self, message: str, *, item_key: str) -> None:
        super().__init__(message)
        self.item_key = item_key


class TrainingDiverged(MLError):
    """The training loss became NaN or infinite."""


class BudgetExhausted(MLError):
    """The time budget ran out before one useful epoch finished."""


class DatasetTooSmall(MLError):
    """There are too few images (or too few per tag) to train and evaluate a model."""


class Cancelled(MLError):
    """The caller's `should_stop` callback asked the work to stop."""
