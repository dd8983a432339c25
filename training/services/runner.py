"""Training one claimed iteration in a worker: snapshot in, artifact, metrics and scores out.

Imported by the Celery task only: it pulls in torch, which the web process never needs.
The project's pipeline (training.services.pipelines) trains and stores the iteration; this
module holds what every kind shares around it: the lease heartbeat, and turning every way
training can fail into a named reason on the row (training.services.failures), so no row is
left "training". Outputs are idempotent (training.services.finish).
"""

from __future__ import annotations

import logging
import time

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from training.ml.device import torch_threads
from training.models import Iteration
from training.services.failures import fail_for_error
from training.services.finish import (
    Outcome,
    build_refs,
    build_targets,
    complete_iteration,
    save_artifact_file,
)
from training.services.iterations import fail_iteration
from training.services.pipelines import pipeline_for
from training.services.progress import IterationReleased, ProgressReporter, lease_heartbeat

# Kept importable from here for callers written before training.services.finish existed.
__all__ = [
    "Outcome",
    "build_refs",
    "build_targets",
    "complete_iteration",
    "save_artifact_file",
    "train_iteration",
]

logger = logging.getLogger(__name__)


def train_iteration(iteration: Iteration) -> None:
    """Train a claimed iteration to completed or failed; never leaves it "training"."""
    images = list(iteration.images.order_by("id"))
    pipeline = pipeline_for(iteration.project)
    report = ProgressReporter(iteration)
    started = time.monotonic()
    try:
        with lease_heartbeat(iteration), torch_threads(settings.LOUPE_TRAIN_THREADS or None):
            pipeline.train(iteration, images, report, started)
    except IterationReleased:
        # Cancelled by an admin, or given up by the sweep: the row's verdict stands.
        logger.info("Iteration %s released by this attempt; training stopped", iteration.pk)
    except SoftTimeLimitExceeded:
        fail_iteration(
            iteration,
            reason=Iteration.FailureReason.UNEXPECTED,
            message="Training went over its time limit and was stopped.",
        )
    except Exception as err:
        fail_for_error(iteration, err, images=images, more_time_hint=pipeline.more_time_hint)
