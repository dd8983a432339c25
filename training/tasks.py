"""Celery tasks of training: the queue's API. They take ids, claim, call a service, return.

`run_iteration` acks late and is rejected back to the queue if its worker process dies, and the
claim makes a second delivery harmless; `sweep_iterations` (beat, every minute) recovers rows
whose worker vanished. Time limits are set per call from the iteration's budget.
"""

from __future__ import annotations

from celery import shared_task

from training.services.iterations import QUICK_TIME_LIMIT_S, claim_iteration, sweep_iterations


@shared_task(
    name="training.run_iteration",
    queue="train",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=QUICK_TIME_LIMIT_S,
    ignore_result=True,
)
def run_iteration(iteration_id: int) -> None:
    iteration = claim_iteration(iteration_id)  # None: finished, deleted or held by another worker
    if iteration is None:
        return
    # Imported here: it loads torch, which the web process (which only enqueues) never needs.
    from training.services.runner import train_iteration

    train_iteration(iteration)


@shared_task(name="training.sweep_iterations", time_limit=120, ignore_result=True)
def sweep_iterations_task() -> int:
    return sweep_iterations()
