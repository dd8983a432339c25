"""Model export jobs: an iteration's model as a zip (ONNX or TorchScript) built by a worker.

Public API (the native API, the pages and the Custom Vision adapter call these; keep them
stable):
- `start_model_export(*, iteration, platform, by) -> ModelExport`: admins only. Queues an
  export, or returns the one already queued, running or done (with the threshold the iteration
  has now). A failed or stale export is queued again in the same row. Raises
  ExportPlatformNotSupported (400, code `export_platform_not_supported`) for any platform but
  SUPPORTED_PLATFORMS (TensorFlow, CoreML, DockerFile, VAIDK, OpenVino...), and
  IterationNotExportable (409, `iteration_not_exportable`) for an iteration without a model.
- `list_model_exports(iteration) -> list[ModelExport]`: the caller has checked access.
- `get_model_export(*, iteration, export_id)`, `open_model_export(export)` (the zip's file).

Invariant: every export ends done or failed. The worker (`run_model_export`) claims a queued
row under a lease that a heartbeat renews; `sweep_model_exports` (beat, every minute) re-queues
an exporting row whose lease ran out while it has runs left (MAX_ATTEMPTS), then fails it, and
fails a row no worker took within QUEUED_MAX_S (its message was lost with Redis). A broker
outage at start fails the row at once. The zip is built in a temporary file and saved through
Django's default storage (local disk or S3), so the web process need not share the worker's
disk; the row points at the new file only once it is saved, and the old one is then deleted.
"""

from __future__ import annotations

import importlib.metadata
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import IO

from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.access import require_role
from labeling.models import Role
from project.errors import LoupeError, NotFound
from project.heartbeat import Heartbeat
from project.queue import enqueue, send
from training.models import Iteration, ModelExport, export_path

logger = logging.getLogger(__name__)

EXPORT_TASK = "training.export_model"
EXPORT_QUEUE = "celery"  # CPU work of a minute or less: the short-task worker, not `train`
SUPPORTED_PLATFORMS: tuple[str, ...] = tuple(ModelExport.Platform.values)
# Custom Vision's other platforms: named so the refusal says "not supported", not "unknown".
CUSTOM_VISION_PLATFORMS = ("CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK", "OpenVino")
LEASE_S = 120
MAX_ATTEMPTS = 2
QUEUED_MAX_S = 15 * 60
TIME_LIMIT_S = 30 * 60
SOFT_TIME_LIMIT_S = TIME_LIMIT_S - 60
_PROGRESS_EVERY_S = 1.0

_NOT_QUEUED = (
    "The task queue (Redis) could not be reached, so no worker got this export. Check that "
    "Redis and the worker run, then export again."
)
_UNEXPECTED = "The export stopped on an unexpected error; it was logged for the administrator."


class ExportPlatformNotSupported(LoupeError):
    code = "export_platform_not_supported"
    http_status = 400


class IterationNotExportable(LoupeError):
    code = "iteration_not_exportable"
    http_status = 409


def supported_platform(platform: str) -> str:
    """The platform's canonical name ("onnx" -> "ONNX"); ExportPlatformNotSupported otherwise."""
    for name in SUPPORTED_PLATFORMS:
        if platform.strip().lower() == name.lower():
            return name
    known = {name.lower(): name for name in CUSTOM_VISION_PLATFORMS}
    shown = known.get(platform.strip().lower(), platform.strip()[:40] or "(none)")
    raise ExportPlatformNotSupported(
        f"Exporting to {shown} is not supported by this server; it exports ONNX and TorchScript.",
        platform=shown,
        supported=list(SUPPORTED_PLATFORMS),
    )


def start_model_export(*, iteration: Iteration, platform: str, by: AbstractBaseUser) -> ModelExport:
    """Queue the export of `iteration` to `platform` (see the module's docstring)."""
    require_role(by, iteration.project, Role.ADMIN)
    name = supported_platform(platform)
    if not iteration.is_completed or not iteration.artifact:
        raise IterationNotExportable(
            f"{iteration} has no trained model to export; wait until its training completes."
        )
    threshold = float(iteration.suggested_threshold)
    with transaction.atomic():
        try:
            with transaction.atomic():
                export, created = ModelExport.objects.get_or_create(
                    iteration=iteration,
                    platform=name,
                    defaults={"threshold": threshold, "created_by": by},
                )
        except IntegrityError:  # another admin created it a moment ago
            export, created = ModelExport.objects.get(iteration=iteration, platform=name), False
        export = ModelExport.objects.select_for_update().get(pk=export.pk)
        if not created and not _needs_rerun(export, threshold):
            return export
        if not created:
            _reset(export, threshold=threshold, by=by)
        enqueue(
            EXPORT_TASK,
            export.pk,
            queue=EXPORT_QUEUE,
            on_error=lambda err: _fail_if_queued(export.pk, "not_queued", _NOT_QUEUED),
        )
    return export


def _needs_rerun(export: ModelExport, threshold: float) -> bool:
    if export.status == ModelExport.Status.FAILED:
        return True
    return export.status == ModelExport.Status.DONE and export.threshold != threshold


def _reset(export: ModelExport, *, threshold: float, by: AbstractBaseUser) -> None:
    export.status = ModelExport.Status.QUEUED
    export.progress_fraction, export.progress_phase = 0.0, ""
    export.failure_reason = export.failure_message = ""
    export.threshold, export.created_by = threshold, by
    export.created, export.finished, export.lease_expires = timezone.now(), None, None
    export.attempts = 0
    export.save()


def list_model_exports(iteration: Iteration) -> list[ModelExport]:
    """The iteration's exports, one per platform (the caller has checked access)."""
    return list(iteration.exports.order_by("platform"))


def get_model_export(*, iteration: Iteration, export_id: int) -> ModelExport:
    export = iteration.exports.filter(pk=export_id).first()
    if export is None:
        raise NotFound("This export does not exist.")
    return export


def open_model_export(export: ModelExport) -> IO[bytes]:
    """The finished zip, opened through the default storage; NotFound before it is done."""
    if export.status != ModelExport.Status.DONE or not export.file:
        raise NotFound(f"The {export.platform} export is not ready to download yet.")
    try:
        return default_storage.open(export.file.name, "rb")  # type: ignore[no-any-return]
    except OSError:
        raise NotFound("The exported file is gone from the storage; export again.") from None


def download_name(export: ModelExport) -> str:
    return export.file.name.rsplit("/", 1)[-1]


# --- the worker's side -------------------------------------------------------------------


def claim_model_export(export_id: int) -> ModelExport | None:
    """Queued -> exporting under a fresh lease; None when there is nothing to do here."""
    with transaction.atomic():
        export = ModelExport.objects.select_for_update().filter(pk=export_id).first()
        if export is None or export.status != ModelExport.Status.QUEUED:
            return None
        export.status = ModelExport.Status.EXPORTING
        export.attempts += 1
        export.lease_expires = _lease_deadline()
        export.progress_fraction, export.progress_phase = 0.0, "Starting"
        export.save(
            update_fields=[
                "status",
                "attempts",
                "lease_expires",
                "progress_fraction",
                "progress_phase",
            ]
        )
    return export


def run_model_export(export_id: int) -> ModelExport | None:
    """Build and store the zip of a queued export. Idempotent; always ends the job it claims."""
    export = claim_model_export(export_id)
    if export is None:
        return None
    with Heartbeat(lambda: _renew(export), interval_s=LEASE_S / 3, name=f"export-{export.pk}"):
        try:
            _build(export)
        except SoftTimeLimitExceeded:
            _fail(export, "timed_out", "The export took longer than its time limit.")
        except Exception:
            logger.exception("Model export %s failed", export.pk)
            _fail(export, "unexpected", _UNEXPECTED)
    export.refresh_from_db()
    return export


def _build(export: ModelExport) -> None:
    from training.ml.export import ExportMismatch, export_model

    iteration = export.iteration
    with iteration.artifact.open("rb") as handle:
        payload = handle.read()
    progress = _progress_writer(export)
    with tempfile.TemporaryFile(suffix=".zip") as tmp:
        try:
            result = export_model(
                payload, export_info(iteration), export.platform, tmp, on_progress=progress
            )
        except ExportMismatch as err:
            _fail(
                export,
                "export_mismatch",
                f"The exported model did not predict as the trained one ({err}); nothing was "
                "kept. The error was logged for the administrator.",
            )
            logger.error("Model export %s failed its self-check: %s", export.pk, err)
            return
        size = tmp.tell()
        tmp.seek(0)
        old_name = export.file.name if export.file else ""
        stored = default_storage.save(export_path(export, f"{result.folder}.zip"), File(tmp))
    finished = ModelExport.objects.filter(
        pk=export.pk, status=ModelExport.Status.EXPORTING, attempts=export.attempts
    ).update(
        status=ModelExport.Status.DONE,
        file=stored,
        size_bytes=size,
        progress_fraction=1.0,
        progress_phase="Done",
        finished=timezone.now(),
        lease_expires=None,
    )
    if not finished:  # the sweep gave this run up meanwhile: keep nothing of it
        default_storage.delete(stored)
    elif old_name and old_name != stored:
        default_storage.delete(old_name)


def export_info(iteration: Iteration):  # type: ignore[no-untyped-def]  # ml types load torch
    """The manifest's provenance of `iteration`: tags in output order by their current names."""
    from training.ml.export_manifest import ExportInfo, ExportTag

    project = iteration.project
    rows = iteration.tags.order_by("index").values_list("index", "tag_id", "tag__name", "name")
    return ExportInfo(
        project_id=project.pk,
        project_name=project.name,
        project_kind=project.kind,
        domain=project.domain,
        iteration_id=iteration.pk,
        iteration_number=iteration.number,
        iteration_name=str(iteration),
        published_name=iteration.published_name,
        training_type=iteration.training_type,
        threshold=float(iteration.suggested_threshold),
        tags=tuple(
            ExportTag(index, tag_id, current or name) for index, tag_id, current, name in rows
        ),
        loupe_version=_loupe_version(),
        exported_at=timezone.now().isoformat().replace("+00:00", "Z"),
    )


def _loupe_version() -> str:
    try:
        return importlib.metadata.version("loupe")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _progress_writer(export: ModelExport) -> Callable[[float, str], None]:
    last = [0.0]

    def write(fraction: float, phase: str) -> None:
        now = time.monotonic()
        if now - last[0] < _PROGRESS_EVERY_S and fraction < 1.0:
            return
        last[0] = now
        ModelExport.objects.filter(
            pk=export.pk, status=ModelExport.Status.EXPORTING, attempts=export.attempts
        ).update(progress_fraction=fraction, progress_phase=phase, lease_expires=_lease_deadline())

    return write


def _renew(export: ModelExport) -> None:
    ModelExport.objects.filter(
        pk=export.pk, status=ModelExport.Status.EXPORTING, attempts=export.attempts
    ).update(lease_expires=_lease_deadline())


def _lease_deadline():  # type: ignore[no-untyped-def]
    return timezone.now() + timedelta(seconds=LEASE_S)


def _fail(export: ModelExport, reason: str, message: str) -> bool:
    """Fail the export if this run still holds it. True when it did."""
    return bool(
        ModelExport.objects.filter(
            pk=export.pk, status=ModelExport.Status.EXPORTING, attempts=export.attempts
        ).update(
            status=ModelExport.Status.FAILED,
            failure_reason=reason,
            failure_message=message,
            finished=timezone.now(),
            lease_expires=None,
        )
    )


def _fail_if_queued(export_id: int, reason: str, message: str) -> None:
    ModelExport.objects.filter(pk=export_id, status=ModelExport.Status.QUEUED).update(
        status=ModelExport.Status.FAILED,
        failure_reason=reason,
        failure_message=message,
        finished=timezone.now(),
    )


def sweep_model_exports() -> int:
    """Re-queue or fail exports whose worker vanished, fail those no worker took; returns how
    many rows it changed."""
    now = timezone.now()
    changed = 0
    lost = ModelExport.objects.filter(status=ModelExport.Status.EXPORTING, lease_expires__lt=now)
    for export_id in lost.values_list("pk", flat=True):
        changed += _sweep_lost(export_id, now)
    stale = ModelExport.objects.filter(
        status=ModelExport.Status.QUEUED, created__lt=now - timedelta(seconds=QUEUED_MAX_S)
    )
    for export_id in stale.values_list("pk", flat=True):
        _fail_if_queued(
            export_id,
            "not_started",
            f"No worker took this export within {QUEUED_MAX_S // 60} minutes; check that the "
            "worker runs, then export again.",
        )
        changed += 1
    return changed


def _sweep_lost(export_id: int, now) -> int:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        export = (
            ModelExport.objects.select_for_update()
            .filter(pk=export_id, status=ModelExport.Status.EXPORTING, lease_expires__lt=now)
            .first()
        )
        if export is None:  # renewed or finished since the list was read
            return 0
        if export.attempts < MAX_ATTEMPTS:
            export.status, export.lease_expires = ModelExport.Status.QUEUED, None
            export.progress_phase = "Worker lost; waiting for another worker"
            export.created = now  # the queued clock starts again
            export.save(update_fields=["status", "lease_expires", "progress_phase", "created"])
            transaction.on_commit(lambda: send(EXPORT_TASK, export_id, queue=EXPORT_QUEUE))
        else:
            export.status, export.lease_expires, export.finished = (
                ModelExport.Status.FAILED,
                None,
                now,
            )
            export.failure_reason = "worker_lost"
            export.failure_message = (
                "The export stopped its worker twice; export again, or ask the administrator "
                "to check the worker's memory."
            )
            export.save()
    return 1
