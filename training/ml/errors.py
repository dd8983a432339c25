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
    """An image could not be read or decoded; `item_key` names it (its content hash).

    `message` may quote the underlying error for the log; `problem` is the short phrase a user
    is shown ("it is missing from storage"), free of library error texts.
    """

    def __init__(
        self, message: str, *, item_key: str, problem: str = "it could not be read"
    ) -> None:
        super().__init__(message)
        self.item_key = item_key
        self.problem = problem


class TrainingDiverged(MLError):
    """The training loss became NaN or infinite."""


class BudgetExhausted(MLError):
    """The time budget ran out before one useful epoch finished.

    `spent_s` says where the budget went ({"preparing images": 290.0, "held back for scoring":
    130.0}), so the failure message can tell the user what to change.
    """

    def __init__(self, message: str, *, spent_s: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.spent_s = dict(spent_s or {})


class DatasetTooSmall(MLError):
    """There are too few images (or too few per tag) to train and evaluate a model."""


class Cancelled(MLError):
    """The caller's `should_stop` callback asked the work to stop."""
