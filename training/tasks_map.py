"""The embedding map's layout task (training.services.embedding_map): takes a project id, ends.

It ends done or failed in every case (the service catches and names failures); a worker killed
mid-run leaves the map "running" until the service's stale rule marks it failed and queues it
again on the next read.
"""

from __future__ import annotations

from celery import shared_task

from training.services.embedding_map import TIME_LIMIT_S, run_map_layout


@shared_task(
    name="training.lay_out_map",
    queue="train",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=TIME_LIMIT_S,
    ignore_result=True,
)
def lay_out_map(project_id: int) -> None:
    run_map_layout(project_id)
