"""Dataset import (a zip, processed by the worker, with progress) and export (a zip download).

An import holds images and their annotations, or (`contents=labels`) annotations alone for
images already in the project, as a zip or the bare annotation file.
"""

from __future__ import annotations

import tempfile
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods

from labeling.access import access_project, has_role
from labeling.models import Project, Role
from labeling.services.datasets import export_dataset, formats_for
from labeling.services.import_jobs import get_import, start_import
from project.errors import LoupeError, ValidationFailed


@require_http_methods(["GET", "POST"])
@login_required
def datasets(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the import form and export links; POST: start an import, then show its progress."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    error = None
    status = 200
    if request.method == "POST":
        try:
            upload = request.FILES.get("archive")
            if upload is None:
                raise ValidationFailed("Choose a zip archive or an annotation file to import.")
            job = start_import(
                project=project,
                upload=upload,
                format_name=request.POST.get("format", ""),
                by=request.user,
                labels_only=request.POST.get("contents") == "labels",
            )
        except LoupeError as err:
            error, status = err.message, err.http_status
        else:
            return redirect(reverse("labeling:datasets", args=[project.pk]) + f"?job={job.job_id}")
    job = None
    if request.GET.get("job"):
        try:
            job = get_import(project=project, job_id=str(UUID(request.GET["job"])))
        except ValueError:
            job = None
    return TemplateResponse(
        request,
        "labeling/datasets.html",
        _context(request, project, job=job, error=error),
        status=status,
    )


@require_GET
@login_required
def dataset_import_status(request: HttpRequest, project_id: int, job_id: UUID) -> HttpResponse:
    """The progress partial the page polls until the job finishes."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    job = get_import(project=project, job_id=str(job_id))
    return TemplateResponse(
        request, "labeling/datasets.html#import-status", {"project": project, "job": job}
    )


@require_GET
@login_required
def dataset_export(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    format_name = request.GET.get("format", "")
    # Spooled to disk past 32 MB: a large project is not held in memory.
    out = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 - the response closes it
    try:
        export_dataset(project=project, format_name=format_name, by=request.user, out=out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    name = f"{slugify(project.name) or 'project'}-{format_name}.zip"
    return FileResponse(out, as_attachment=True, filename=name, content_type="application/zip")


def _context(request: HttpRequest, project: Project, **extra: object) -> dict[str, object]:
    return {
        "project": project,
        "formats": formats_for(project),
        "label_formats": [fmt for fmt in formats_for(project) if fmt.names_images],
        "can_import": has_role(request.user, project, Role.ADMIN),
        **extra,
    }
