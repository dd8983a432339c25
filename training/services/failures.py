"""How a training ends when it cannot complete: each failure becomes a named reason and a message
a user can act on. The technical details (the library's error text, the traceback) go to the log,
never to the page.
"""

from __future__ import annotations

import logging

from training.ml.errors import (
    BudgetExhausted,
    DatasetCorrupt,
    DatasetTooSmall,
    MLError,
    TrainingDiverged,
)
from training.models import Iteration, IterationImage
from training.services.iterations import fail_iteration

logger = logging.getLogger(__name__)


def fail_for_error(
    iteration: Iteration,
    err: Exception,
    *,
    images: list[IterationImage],
    more_time_hint: str,
) -> None:
    """Mark the iteration failed with the reason and message `err` stands for; log the details."""
    reason, message = failure_for(
        err, iteration=iteration, images=images, more_time_hint=more_time_hint
    )
    if isinstance(err, MLError):
        logger.warning("Iteration %s failed (%s): %s", iteration.pk, reason, err.message)
    else:
        # A bug or an environment problem: the traceback is for the administrator.
        logger.error("Iteration %s failed unexpectedly", iteration.pk, exc_info=err)
    fail_iteration(iteration, reason=reason, message=message)


def failure_for(
    err: Exception,
    *,
    iteration: Iteration,
    images: list[IterationImage],
    more_time_hint: str,
) -> tuple[str, str]:
    """(failure reason, user message) for an exception raised while training `iteration`."""
    reasons = Iteration.FailureReason
    if isinstance(err, DatasetCorrupt):
        name = _name_of(images, err.item_key)
        return reasons.DATASET_CORRUPT, (
            f"The image “{name}” could not be read: {err.problem}. Delete or re-upload it, "
            "then train again."
        )
    if isinstance(err, TrainingDiverged):
        return reasons.TRAINING_DIVERGED, (
            "Training diverged: the loss became NaN or infinite. Check the images for extreme "
            "or broken pixel values."
        )
    if isinstance(err, BudgetExhausted):
        return reasons.BUDGET_NOT_ENOUGH, _budget_message(iteration, err, more_time_hint)
    if isinstance(err, DatasetTooSmall):
        # check_trainable refuses most of these before a worker is involved; what is left (a
        # held-out split without boxes) is the data's fault, not a bug.
        return reasons.UNEXPECTED, err.message
    if isinstance(err, MLError):  # its messages are written for users
        return reasons.UNEXPECTED, err.message
    return reasons.UNEXPECTED, (
        f"Training stopped on an unexpected error (the details are in the worker's log under "
        f"iteration {iteration.pk}). Try again; if it happens again, ask the administrator."
    )


def _budget_message(iteration: Iteration, err: BudgetExhausted, hint: str) -> str:
    budget = (
        f"{iteration.budget_s} seconds"
        if iteration.budget_s < 120
        else f"{iteration.budget_s / 60:g} minutes"
    )
    if not err.spent_s:
        return f"The budget of {budget} ran out before one useful epoch. {hint}"
    spent = ", ".join(f"{round(seconds)} s {what}" for what, seconds in err.spent_s.items())
    return (
        f"The budget of {budget} ran out before one pass over the training images ({spent}). {hint}"
    )


def _name_of(images: list[IterationImage], key: str) -> str:
    for image in images:
        if image.sha256 == key:
            return image.original_name or image.file_name
    return key or "unknown"
