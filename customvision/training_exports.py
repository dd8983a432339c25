"""Training API: an iteration's model exports (list, start), by training.services.model_export."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from customvision.training_media import export_uri
from customvision.training_projects import project_and_iteration
from customvision.training_wire import (
    cv_error,
    query_required,
    query_text,
)
from training.models import ModelExport
from training.services.model_export import (
    ExportPlatformNotSupported,
    IterationNotExportable,
    list_model_exports,
    start_model_export,
)

User = AbstractBaseUser


_EXPORT_STATUSES = {
    ModelExport.Status.QUEUED: "Exporting",
    ModelExport.Status.EXPORTING: "Exporting",
    ModelExport.Status.DONE: "Done",
    ModelExport.Status.FAILED: "Failed",
}


def _export_json(request: HttpRequest, export: ModelExport) -> dict[str, Any]:
    done = export.status == ModelExport.Status.DONE and bool(export.file)
    return {
        "platform": export.platform,
        "status": _EXPORT_STATUSES.get(export.status, "Failed"),
        "downloadUri": export_uri(request, export.pk) if done else None,
        "flavor": None,
        # Exporting again after a threshold change rebuilds the same export in place.
        "newerVersionAvailable": False,
    }


def get_exports(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> list[Any]:
    """The iteration's model exports (ONNX, TorchScript): `Exporting` until a worker has built
    the zip, then `Done` with a signed `downloadUri`, or `Failed`."""
    _, iteration = project_and_iteration(user, project_id, iteration_id)
    return [_export_json(request, export) for export in list_model_exports(iteration)]


def export_iteration(request: HttpRequest, user: User, project_id: int, iteration_id: int) -> Any:
    """Queue an export (training.services.model_export: ONNX and TorchScript; Custom Vision's
    other platforms are refused by name). The SDK then polls `get_exports` until `Done`."""
    project, iteration = project_and_iteration(user, project_id, iteration_id)
    iteration.project = project
    platform = query_required(request, "platform")
    if query_text(request, "flavor"):
        raise cv_error(
            "BadRequestNotSupported",
            "Export flavors are not supported by this server; leave “flavor” out.",
        )
    try:
        export = start_model_export(iteration=iteration, platform=platform, by=user)
    except ExportPlatformNotSupported as err:
        raise cv_error("BadRequestNotSupported", err.message) from None
    except IterationNotExportable as err:
        raise cv_error("BadRequestExportValidationFailed", err.message) from None
    return _export_json(request, export)
