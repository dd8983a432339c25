"""Dataset import and export: both run in the worker, with progress on the datasets page.

An import holds images and their annotations, or (`contents=labels`) annotations alone for
images already in the project, as a zip or the bare annotation file. An export writes the
project's images and labels (optionally only some tags' images, a gallery filter's, or a saved
filter's, resolved when the export starts) to a zip the page then links to.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labeling.access import access_project, has_role
from labeling.models import Project, Role, SavedFilter
from labeling.services.datasets import ExportSelection, formats_for
from labeling.services.export_jobs import get_export, open_export, recent_exports, start_export
from labeling.services.images import ImageFilter
from labeling.services.import_jobs import get_import, start_import
from labeling.services.saved_filters import describe, get_saved_filter, resolve_filter
from project.errors import LoupeError, ValidationFailed
from project.streaming import stream_file


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


@require_POST
@login_required
def dataset_export(request: HttpRequest, project_id: int) -> HttpResponse:
    """Start an export job, then show its progress on the datasets page."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    try:
        job = start_export(
            project=project,
            format_name=request.POST.get("format", ""),
            by=request.user,
            selection=_selection(request),
            saved_filter=_saved_filter(request, project),
        )
    except LoupeError as err:
        context = _context(request, project, export_error=err.message)
        return TemplateResponse(request, "labeling/datasets.html", context, status=err.http_status)
    return redirect(reverse("labeling:datasets", args=[project.pk]) + f"?export={job.job_id}")


def _selection(request: HttpRequest) -> ExportSelection:
    try:
        tag_ids = tuple(int(value) for value in request.POST.getlist("tags"))
    except ValueError:
        raise ValidationFailed("Tags are chosen by their ids.") from None
    return ExportSelection(tag_ids=tag_ids, status=request.POST.get("filter") or "all")


def _saved_filter(request: HttpRequest, project: Project) -> SavedFilter | None:
    """The saved filter chosen in the form ("" for none: the tags and filter below)."""
    value = request.POST.get("saved_filter", "")
    return get_saved_filter(project, value) if value else None


@require_GET
@login_required
def dataset_export_status(request: HttpRequest, project_id: int, export_id: UUID) -> HttpResponse:
    """The export's progress partial, polled until the job finishes."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    export = get_export(project=project, job_id=str(export_id))
    return TemplateResponse(
        request, "labeling/datasets.html#export-status", {"project": project, "export": export}
    )


@require_GET
@login_required
def dataset_export_download(request: HttpRequest, project_id: int, export_id: UUID) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    job, archive = open_export(project=project, job_id=str(export_id))
    return stream_file(
        archive, as_attachment=True, filename=job.download_name, content_type="application/zip"
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


def _context(request: HttpRequest, project: Project, **extra: object) -> dict[str, object]:
    return {
        "project": project,
        "formats": formats_for(project),
        "label_formats": [fmt for fmt in formats_for(project) if fmt.names_images],
        "can_import": has_role(request.user, project, Role.ADMIN),
        "export_tags": project.tags.all(),
        "export_filters": _filter_choices(),
        "export_saved_filters": _saved_filter_choices(project),
        "exports": recent_exports(project=project),
        "export": _requested_export(request, project),
        "export_initial": _export_initial(request),
        **extra,
    }


def _export_initial(request: HttpRequest) -> dict[str, object]:
    """The gallery's filter (`?filter=untagged`, `?tag=3`: its "Export these" link) chosen in
    the export form; anything else is ignored (the form then offers every image)."""
    tag = request.GET.get("tag", "")
    saved = request.POST.get("saved_filter") or request.GET.get("saved_filter", "")
    return {
        "filter": request.GET.get("filter", "all"),
        "tags": {int(tag)} if tag.isdigit() else set(),
        "saved_filter": int(saved) if saved.isdigit() else None,
    }


def _saved_filter_choices(project: Project) -> list[dict[str, object]]:
    names = dict(project.tags.values_list("pk", "name"))
    choices = []
    for saved in project.saved_filters.all():
        saved.project = project
        resolved = resolve_filter(saved, project_tag_ids=names.keys())
        choices.append(
            {"id": saved.pk, "name": saved.name, "description": describe(resolved, names)}
        )
    return choices


def _filter_choices() -> list[tuple[str, str]]:
    labels = {"all": "All images", "tagged": "Tagged images", "untagged": "Untagged images"}
    return [
        (status, labels.get(status) or ImageFilter(status=status).status_label)
        for status in ImageFilter.statuses()
    ]


def _requested_export(request: HttpRequest, project: Project) -> object:
    try:
        return get_export(project=project, job_id=str(UUID(request.GET.get("export", ""))))
    except (ValueError, LoupeError):
        return None
