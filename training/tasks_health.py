"""The dataset health check task (training.services.health): takes a project id, runs, ends.

It ends done or failed in every case (the service catches and names failures); a worker killed
mid-run leaves the report "running" until the service's stale rule marks it failed and queues it
again on the next read.
"""

from __future__ import annotations

from celery import shared_task

from training.services.health import TIME_LIMIT_S, run_health_check, sweep_health


@shared_task(
    name="training.check_health",
    queue="train",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=TIME_LIMIT_S,
    ignore_result=True,
)
def check_health(project_id: int) -> None:
    run_health_check(project_id)


@shared_task(name="training.sweep_health", time_limit=120, ignore_result=True)
def sweep_health_task() -> int:
    return sweep_health()
