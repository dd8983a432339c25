"""Starting, claiming, finishing and sweeping iterations.

Invariant: a project has at most one queued or training iteration (a database constraint), and
no iteration stays "training" without a live worker: the worker holds a lease it keeps renewing
(`training.services.progress`), and `sweep_iterations` re-queues an iteration whose lease ran out
once, then fails it with `worker_lost`, so a dataset that kills its worker cannot loop. The sweep
runs from Celery beat every minute and before every new training starts. If Redis dies with a
queued message, the row stays queued until an admin deletes it (deleting a queued iteration is
allowed; a late message for it then claims nothing).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from labeling.access import require_role
from labeling.models import Project, Role
from project.errors import LabelRuleError
from project.queue import enqueue
from training.models import Iteration, IterationImage, IterationTag
from training.services.pipelines import pipeline_for
from training.services.progress import lease_deadline, push_iteration_state
from training.services.snapshot import Snapshot

logger = logging.getLogger(__name__)

QUEUE = "train"
# The task's hard limit sits this far above the budget: embedding and metrics come on top of it.
TIME_LIMIT_MARGIN_S = 1800
QUICK_TIME_LIMIT_S = 2 * 3600


def backbone_for(project: Project) -> str:
    """The backbone the project's domain trains on (training.ml.domains.BACKBONE_FOR_DOMAIN,
    torch-free: starting a training in the web process must not import torch)."""
    from training.ml.domains import BACKBONE_FOR_DOMAIN

    return BACKBONE_FOR_DOMAIN[project.domain]


def start_iteration(
    *,
    project: Project,
    by: AbstractBaseUser,
    training_type: str = Iteration.TrainingType.QUICK,
    budget_s: int = 0,
    force: bool = False,
) -> Iteration:
    """Snapshot the project's labels into a new queued iteration and send it to a worker.

    Admins only. Refuses (LabelRuleError) when the data cannot make a model, when nothing changed
    since the last completed iteration of the same type (unless `force`), or while another
    training of the project is queued or running.
    """
    require_role(by, project, Role.ADMIN)
    budget_s = pipeline_for(project).budget_for(training_type, budget_s)
    sweep_iterations(project_id=project.pk)
    try:
        with transaction.atomic():
            iteration = _create_iteration(
                project=project, by=by, training_type=training_type, budget_s=budget_s, force=force
            )
    except IntegrityError:
        # Two admins pressed Train at once; the constraint let one through.
        raise _busy() from None
    return iteration


class TrainingInProgress(LabelRuleError):
    """Another training of the project is queued or running (one at a time per project)."""

    code = "training_in_progress"


class TrainingNotNeeded(LabelRuleError):
    """Nothing changed since the last completed iteration of this type; `force` trains anyway."""

    code = "training_not_needed"


def _busy() -> TrainingInProgress:
    return TrainingInProgress(
        "A training of this project is already queued or running. "
        "Wait for it to finish before starting another."
    )


def _create_iteration(
    *, project: Project, by: AbstractBaseUser, training_type: str, budget_s: int, force: bool
) -> Iteration:
    # Lock the project row: iteration numbers and the one-active rule stay serial.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    if project.iterations.active().exists():
        raise _busy()
    pipeline = pipeline_for(project)
    snapshot = pipeline.take_snapshot(project)
    pipeline.check_trainable(snapshot)
    backbone = backbone_for(project)
    last = (
        project.iterations.completed()
        .filter(training_type=training_type, backbone=backbone)
        .order_by("-number")
        .first()
    )
    if last is not None and last.snapshot_hash == snapshot.hash and not force:
        raise TrainingNotNeeded(
            f"Nothing changed since {last.name}: same images, same tags. Add or fix labels, "
            "or tick “Train even if nothing changed” to train again anyway."
        )
    number = (project.iterations.aggregate(n=Max("number"))["n"] or 0) + 1
    iteration = Iteration.objects.create(
        project=project,
        number=number,
        name=f"Iteration {number}",
        training_type=training_type,
        budget_s=budget_s,
        backbone=backbone,
        is_multilabel=not project.is_multiclass,
        is_forced=force,
        snapshot_hash=snapshot.hash,
        image_count=len(snapshot.images),
        created_by=by,
        task_id=str(uuid.uuid4()),
        progress_phase="Waiting for a worker",
    )
    _store_snapshot(iteration, snapshot)
    _enqueue(iteration)
    return iteration


def _store_snapshot(iteration: Iteration, snapshot: Snapshot) -> None:
    IterationTag.objects.bulk_create(
        [
            IterationTag(
                iteration=iteration,
                tag_id=tag.tag_id,
                name=tag.name,
                index=index,
                image_count=tag.image_count,
            )
            for index, tag in enumerate(snapshot.tags)
        ]
    )
    IterationImage.objects.bulk_create(
        [
            IterationImage(
                iteration=iteration,
                image_id=image.image_id,
                sha256=image.sha256,
                file_name=image.file_name,
                original_name=image.original_name,
                labels=list(image.labels),
                is_negative=image.is_negative,
                boxes=[list(box) for box in image.boxes],
            )
            for image in snapshot.images
        ],
        batch_size=500,
    )


def task_time_limit_s(iteration: Iteration) -> int:
    if not iteration.budget_s:  # quick classification: no budget of its own
        return QUICK_TIME_LIMIT_S
    return iteration.budget_s + TIME_LIMIT_MARGIN_S


def _enqueue(iteration: Iteration) -> None:
    """Queue the training task by name once the row and its snapshot are committed (a worker must
    find them when the message arrives); an unreachable broker fails the iteration with a reason
    instead of leaving it queued for good."""
    limit_s = task_time_limit_s(iteration)
    iteration_id = iteration.pk
    enqueue(
        "training.run_iteration",
        iteration_id,
        queue=QUEUE,
        on_error=lambda err: _fail_unqueued(iteration_id),
        task_id=iteration.task_id,
        time_limit=limit_s,
        soft_time_limit=limit_s - 60,
    )


def _fail_unqueued(iteration_id: int) -> None:
    Iteration.objects.filter(pk=iteration_id, status=Iteration.Status.QUEUED).update(
        status=Iteration.Status.FAILED,
        failure_reason=Iteration.FailureReason.UNEXPECTED,
        failure_message="The task queue (Redis) could not be reached, so no worker got this "
        "training. Check that Redis and the worker run, then train again.",
        finished=timezone.now(),
    )


def cancel_iteration(*, iteration: Iteration, by: AbstractBaseUser) -> Iteration:
    """Stop a queued or training iteration: it ends failed, with the reason `cancelled`.

    Admins only. A queued one is never claimed (`claim_iteration` takes queued rows only). A
    training one's worker loses its hold: its next progress write raises IterationReleased and
    it stops, and a completion racing this stores nothing (`complete_iteration` checks the
    same status and attempt).
    """
    require_role(by, iteration.project, Role.ADMIN)
    with transaction.atomic():
        locked = Iteration.objects.select_for_update().get(pk=iteration.pk)
        if not locked.is_active:
            raise LabelRuleError(
                f"{locked.name} is {locked.get_status_display().lower()}: only a queued or "
                "training iteration can be cancelled."
            )
        locked.status = Iteration.Status.FAILED
        locked.failure_reason = Iteration.FailureReason.CANCELLED
        locked.failure_message = f"Cancelled by {by.get_username()}."
        locked.finished = timezone.now()
        locked.lease_expires = None
        locked.save(
            update_fields=[
                "status",
                "failure_reason",
                "failure_message",
                "finished",
                "lease_expires",
            ]
        )
    push_iteration_state(locked)
    return locked


def claim_iteration(iteration_id: int) -> Iteration | None:
    """Move a queued iteration to training under a fresh lease; None when there is nothing to do.

    A redelivered message for an iteration another worker holds (lease alive), or one already
    finished or deleted, claims nothing: running a task twice is harmless.
    """
    with transaction.atomic():
        iteration = Iteration.objects.select_for_update().filter(pk=iteration_id).first()
        if iteration is None or iteration.status != Iteration.Status.QUEUED:
            return None
        now = timezone.now()
        iteration.status = Iteration.Status.TRAINING
        iteration.attempts += 1
        iteration.lease_expires = lease_deadline()
        iteration.started = now
        iteration.progress_fraction = 0.0
        iteration.progress_phase = "Starting"
        iteration.save(
            update_fields=[
                "status",
                "attempts",
                "lease_expires",
                "started",
                "progress_fraction",
                "progress_phase",
            ]
        )
    push_iteration_state(iteration)
    return iteration


def fail_iteration(iteration: Iteration, *, reason: str, message: str) -> bool:
    """Mark a training iteration failed, if this attempt still holds it. True when it did."""
    updated = Iteration.objects.filter(
        pk=iteration.pk,
        status=Iteration.Status.TRAINING,
        attempts=iteration.attempts,
    ).update(
        status=Iteration.Status.FAILED,
        failure_reason=reason,
        failure_message=message,
        finished=timezone.now(),
        lease_expires=None,
    )
    if updated:
        iteration.refresh_from_db()
        push_iteration_state(iteration)
    return bool(updated)


def sweep_iterations(*, project_id: int | None = None) -> int:
    """Re-queue or fail iterations whose worker vanished; returns how many rows it changed.

    A training row with an expired lease goes back to the queue while it has runs left
    (LOUPE_TRAIN_MAX_ATTEMPTS), else fails with worker_lost.
    """
    now = timezone.now()
    rows = Iteration.objects.filter(status=Iteration.Status.TRAINING, lease_expires__lt=now)
    if project_id is not None:
        rows = rows.filter(project_id=project_id)
    changed = 0
    for iteration_id in rows.values_list("pk", flat=True):
        changed += _sweep_one(iteration_id, now)
    return changed


def _sweep_one(iteration_id: int, now: datetime) -> int:
    with transaction.atomic():
        iteration = (
            Iteration.objects.select_for_update()
            .filter(pk=iteration_id, status=Iteration.Status.TRAINING, lease_expires__lt=now)
            .first()
        )
        if iteration is None:  # renewed or finished since the list was read
            return 0
        if iteration.attempts < settings.LOUPE_TRAIN_MAX_ATTEMPTS:
            iteration.status = Iteration.Status.QUEUED
            iteration.lease_expires = None
            iteration.progress_phase = "Worker lost; waiting for another worker"
            iteration.task_id = str(uuid.uuid4())
            iteration.save(update_fields=["status", "lease_expires", "progress_phase", "task_id"])
            _enqueue(iteration)
        else:
            iteration.status = Iteration.Status.FAILED
            iteration.failure_reason = Iteration.FailureReason.WORKER_LOST
            iteration.failure_message = (
                f"The worker training this iteration stopped without a word "
                f"({iteration.attempts} attempt{'s' if iteration.attempts != 1 else ''}): it "
                "was killed or ran out of memory. Try again, or with fewer or smaller images."
            )
            iteration.finished = now
            iteration.lease_expires = None
            iteration.save(
                update_fields=[
                    "status",
                    "failure_reason",
                    "failure_message",
                    "finished",
                    "lease_expires",
                ]
            )
    push_iteration_state(iteration)
    return 1
