"""Progress of a running iteration: throttled row writes, websocket pushes and the lease heartbeat.

Invariant: while a worker trains an iteration, its `lease_expires` lies in the future. Progress
writes renew the lease, and a heartbeat thread renews it through long silent phases (one big
epoch). When the worker dies (SIGKILL, OOM, host lost) nothing renews it: the sweep
(`training.services.iterations.sweep_iterations`) sees the expired lease and re-queues or fails
the row. If Redis is down, pushes are dropped (the page reads the row on reload) and training goes
on; only the database is needed to keep a lease.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from project.heartbeat import Heartbeat
from training.models import Iteration

logger = logging.getLogger(__name__)

# At most one row write and one push per second: the page cannot show faster, and SQLite has one
# writer for the whole installation.
PROGRESS_INTERVAL_S = 1.0
# Advanced and detection training report "epoch 3/200" (training.ml.advanced, .detection).
_EPOCH = re.compile(r"\bepoch (\d+)/(\d+)")
# Below this fraction done, an estimate of the time left is mostly noise: none is shown.
ESTIMATE_MIN_FRACTION = 0.05


def group_name(iteration_id: int) -> str:
    return f"iteration-{iteration_id}"


def lease_deadline() -> Any:
    return timezone.now() + timedelta(seconds=settings.LOUPE_TRAIN_LEASE_S)


def push_iteration_state(iteration: Iteration) -> None:
    """Send the iteration's state to the pages watching it; a dead channel layer is logged only."""
    message = {"type": "iteration.progress", **iteration_state(iteration)}
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group_name(iteration.pk), message)
    except Exception:
        logger.warning("Could not push progress of iteration %s", iteration.pk, exc_info=True)


def iteration_state(iteration: Iteration) -> dict[str, Any]:
    """The JSON the progress socket sends: what the progress card and the status badges show.

    `elapsed_s` counts from the start of training (from creation while queued, to `finished` once
    done); the page keeps counting between pushes. `epoch`/`epochs` come from the phase text of
    a budgeted run; `budget_s` is 0 for quick classification, which has no budget.
    """
    epoch = _EPOCH.search(iteration.progress_phase or "")
    return {
        "iteration_id": iteration.pk,
        "status": iteration.status,
        "status_label": iteration.get_status_display(),
        "fraction": round(iteration.progress_fraction, 4),
        "phase": iteration.progress_phase,
        "failure_reason": iteration.failure_reason,
        "failure_message": iteration.failure_message,
        "elapsed_s": round(_elapsed_s(iteration), 1),
        "budget_s": iteration.budget_s,
        "epoch": int(epoch.group(1)) if epoch else None,
        "epochs": int(epoch.group(2)) if epoch else None,
    }


def _elapsed_s(iteration: Iteration) -> float:
    if iteration.status == Iteration.Status.QUEUED or iteration.started is None:
        since = iteration.created
    else:
        since = iteration.started
    if since is None:
        return 0.0
    until = iteration.finished if iteration.finished and not iteration.is_active else timezone.now()
    return max((until - since).total_seconds(), 0.0)


def clock(seconds: float) -> str:
    """2:13, or 1:02:13 past an hour."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def timing_summary(state: dict[str, Any]) -> str:
    """One line under the progress bar; static/js/progress-socket.js writes the same words.

    "Elapsed 2:13 · about 5 min left · budget left 7:47 · epoch 3 of 200 planned"
    """
    elapsed = float(state["elapsed_s"])
    if state["status"] == Iteration.Status.QUEUED:
        return f"Waiting for a worker for {clock(elapsed)}"
    parts = [f"Elapsed {clock(elapsed)}"]
    fraction = float(state["fraction"])
    if ESTIMATE_MIN_FRACTION <= fraction < 1:
        left = elapsed * (1 - fraction) / fraction
        parts.append("under a minute left" if left < 60 else f"about {round(left / 60)} min left")
    if state["budget_s"]:
        parts.append(f"budget left {clock(max(state['budget_s'] - elapsed, 0))}")
    if state["epoch"] is not None:
        parts.append(f"epoch {state['epoch']} of {state['epochs']} planned")
    return " · ".join(parts)


class IterationReleased(Exception):
    """This attempt no longer holds its iteration (cancelled, or given up by the sweep): the
    worker stops training it. Raised from the progress callback, so it unwinds the ML core."""


class ProgressReporter:
    """`reporter(phase, fraction)`: the callback handed to the ML core, throttled to 1/s.

    A write that finds the row no longer training under this attempt raises IterationReleased.
    """

    def __init__(self, iteration: Iteration) -> None:
        self.iteration = iteration
        self._last = 0.0

    def __call__(self, phase: str, fraction: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        fraction = min(max(float(fraction), 0.0), 1.0)
        updated = Iteration.objects.filter(
            pk=self.iteration.pk,
            status=Iteration.Status.TRAINING,
            attempts=self.iteration.attempts,
        ).update(
            progress_fraction=fraction, progress_phase=phase[:200], lease_expires=lease_deadline()
        )
        if not updated:
            raise IterationReleased(f"iteration {self.iteration.pk} was cancelled or given up")
        self.iteration.progress_fraction = fraction
        self.iteration.progress_phase = phase[:200]
        push_iteration_state(self.iteration)


def lease_heartbeat(iteration: Iteration) -> Heartbeat:
    """Renews the iteration's lease every third of it while this attempt still holds it."""
    iteration_id, attempt = iteration.pk, iteration.attempts

    def renew() -> None:
        Iteration.objects.filter(
            pk=iteration_id, status=Iteration.Status.TRAINING, attempts=attempt
        ).update(lease_expires=lease_deadline())

    return Heartbeat(
        renew, interval_s=settings.LOUPE_TRAIN_LEASE_S / 3, name=f"lease-{iteration_id}"
    )
