"""The iteration page's Export card: start an export, poll its progress, download the zip.

Admins only, as the API (training/api_exports.py); the service holds the rules. Plain
POST/redirect/GET without JavaScript; with htmx the card re-renders in place.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling.access import access_project
from labeling.models import Project, Role
from project.errors import LoupeError
from project.streaming import stream_file
from training.models import Iteration
from training.services.model_export import (
    download_name,
    get_model_export,
    open_model_export,
    start_model_export,
)
from training.templatetags.model_exports import card_context

CARD = "training/_model_exports.html"


def _admin_iteration(
    request: HttpRequest, project_id: int, iteration_id: int
) -> tuple[Project, Iteration]:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    return project, get_object_or_404(project.iterations, pk=iteration_id)


@require_GET
@login_required
def iteration_exports(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    """The card alone (htmx polls it while an export runs)."""
    project, iteration = _admin_iteration(request, project_id, iteration_id)
    if not request.htmx:
        return redirect(_page_url(project, iteration))
    return TemplateResponse(request, CARD, card_context(project, iteration))


@require_POST
@login_required
def iteration_export_start(
    request: HttpRequest, project_id: int, iteration_id: int
) -> HttpResponse:
    project, iteration = _admin_iteration(request, project_id, iteration_id)
    iteration.project = project
    try:
        start_model_export(
            iteration=iteration, platform=request.POST.get("platform", ""), by=request.user
        )
    except LoupeError as err:
        if not request.htmx:
            raise
        context = card_context(project, iteration, error=err.message)
        return TemplateResponse(request, CARD, context, status=err.http_status)
    if not request.htmx:
        return redirect(_page_url(project, iteration))
    return TemplateResponse(request, CARD, card_context(project, iteration))


@require_GET
@login_required
def iteration_export_download(
    request: HttpRequest, project_id: int, iteration_id: int, model_export_id: int
) -> FileResponse:
    _, iteration = _admin_iteration(request, project_id, iteration_id)
    export = get_model_export(iteration=iteration, export_id=model_export_id)
    return stream_file(
        open_model_export(export),
        as_attachment=True,
        filename=download_name(export),
        content_type="application/zip",
    )


def _page_url(project: Project, iteration: Iteration) -> str:
    url = reverse("training:iteration-performance", args=[project.id, iteration.id])
    return f"{url}#model-exports"
