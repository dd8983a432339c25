"""Celery tasks of training: the queue's API. They take ids, claim, call a service, return.

`run_iteration` acks late and is rejected back to the queue if its worker process dies, and the
claim makes a second delivery harmless; `sweep_iterations` (beat, every minute) recovers rows
whose worker vanished. Time limits are set per call from the iteration's budget.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_process_init

from training.services.iterations import QUICK_TIME_LIMIT_S, claim_iteration, sweep_iterations

logger = logging.getLogger(__name__)


@shared_task(
    name="training.run_iteration",
    queue="train",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=QUICK_TIME_LIMIT_S,
    ignore_result=True,
)
def run_iteration(iteration_id: int) -> None:
    _stop_warming()
    iteration = claim_iteration(iteration_id)  # None: finished, deleted or held by another worker
    if iteration is None:
        return
    # Imported here: it loads torch, which the web process (which only enqueues) never needs.
    from training.services.runner import train_iteration

    train_iteration(iteration)


@shared_task(name="training.sweep_iterations", time_limit=120, ignore_result=True)
def sweep_iterations_task() -> int:
    return sweep_iterations()


# --- Warming the training worker ---------------------------------------------------------------
# A fresh training worker paid for importing torch and building the stock backbone's ONNX
# Runtime engine (model build, ONNX export, session) inside its first training: 30 s of the
# first Custom Vision quickstart on a busy 2-core host (bench/customvision_quickstart.py). The
# train worker's process does it as soon as it starts, while the server has nothing to train,
# for one backbone: that of the most recently created project's domain or, on a server with
# no project yet, General's (the Training API's default, the slowest to build). One only, so
# at most one engine build shares the cores with a training that arrives meanwhile (and if
# that training needs this engine, it waits on stock_engine's lock instead of building it).

_train_worker = False
_warm_stop = threading.Event()


@celeryd_after_setup.connect
def _note_queues(sender: Any, instance: Any, **kwargs: Any) -> None:
    global _train_worker  # read by the pool processes this worker forks
    _train_worker = "train" in instance.app.amqp.queues.consume_from


@worker_process_init.connect
def _start_warm_up(**kwargs: Any) -> None:
    if _train_worker:
        threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()


def _warm_up() -> None:
    from django.conf import settings
    from django.db import close_old_connections

    try:
        backbones = _backbones_to_warm()
        close_old_connections()
        import torch

        from training.ml.features import stock_engine

        # The thread count every training sets (runner.train_iteration), set for good in this
        # process: the engine is built as a training would build it (ONNX Runtime follows
        # torch's count), and no context here restores another count under a running training.
        if settings.LOUPE_TRAIN_THREADS:
            torch.set_num_threads(settings.LOUPE_TRAIN_THREADS)
        for backbone in backbones:
            if _warm_stop.is_set():
                return
            stock_engine(backbone, device=settings.LOUPE_DEVICE)
            logger.info("Training worker warmed up the %s engine", backbone)
    except Exception:  # warming is an optimisation: the training builds what is missing
        logger.exception("Training worker warm-up failed")


def _backbones_to_warm() -> list[str]:
    from labeling.models import Project
    from training.ml.domains import BACKBONE_FOR_DOMAIN

    latest = Project.objects.order_by("-created").values_list("domain", flat=True).first()
    backbone = BACKBONE_FOR_DOMAIN.get(str(latest or Project.Domain.GENERAL))
    return [backbone] if backbone else []


def _stop_warming() -> None:
    """No further engines: a training has come (the one being built is finished)."""
    _warm_stop.set()
