"""Where-the-model-looked tasks (training.services.saliency, training.services.context_reliance).

Each takes ids, runs, ends: the services catch and name every failure and write the job's
status file "done" or "failed"; a worker killed mid-run leaves it "queued"/"running" until the
services' stale rule reports it failed and the next request queues it again.
"""

from __future__ import annotations

from celery import shared_task

from training.services import context_reliance, saliency


@shared_task(
    name=saliency.TASK,
    queue="predict",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=saliency.TIME_LIMIT_S,
    soft_time_limit=saliency.TIME_LIMIT_S - 30,
    ignore_result=True,
)
def explain_prediction(iteration_id: int, key: str) -> str:
    return saliency.explain_prediction(iteration_id, key)


@shared_task(
    name=context_reliance.TASK,
    queue="predict",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=context_reliance.TIME_LIMIT_S,
    soft_time_limit=context_reliance.TIME_LIMIT_S - 60,
    ignore_result=True,
)
def measure_context_reliance(iteration_id: int) -> str:
    return context_reliance.measure_iteration(iteration_id)
