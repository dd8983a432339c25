"""The Custom Vision import page: endpoint, training key and project id in, a worker copies the
project (labeling.services.customvision_import), the page shows its progress and report.

Project creators only (LOUPE_PROJECT_CREATORS), as for a new project; each sees their own
imports. The key is sent to the worker in the task message, never stored or shown again.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from labeling.access import require_project_creator
from labeling.services.customvision_import import (
    get_customvision_import,
    recent_customvision_imports,
    start_customvision_import,
)
from project.errors import LoupeError

TEMPLATE = "labeling/customvision_import.html"


@require_http_methods(["GET", "POST"])
@login_required
def customvision_import(request: HttpRequest) -> HttpResponse:
    """GET: the form, the import asked for (`?job=`) and recent ones; POST: start one."""
    require_project_creator(request.user)
    error, status = None, 200
    if request.method == "POST":
        try:
            job = start_customvision_import(
                endpoint=request.POST.get("endpoint", ""),
                training_key=request.POST.get("training_key", ""),
                source_project_id=request.POST.get("project_id", ""),
                by=request.user,
            )
        except LoupeError as err:
            error, status = err.message, err.http_status
        else:
            return redirect(reverse("labeling:customvision-import") + f"?job={job.job_id}")
    job = None
    if request.GET.get("job"):
        try:
            job = get_customvision_import(job_id=request.GET["job"], user=request.user)
        except LoupeError:
            job = None
    context = {
        "job": job,
        # The shown job has its own live card: listed once.
        "jobs": [
            item
            for item in recent_customvision_imports(user=request.user)
            if job is None or item.job_id != job.job_id
        ],
        "error": error,
        "form": {
            "endpoint": request.POST.get("endpoint", ""),
            "project_id": request.POST.get("project_id", ""),
        },
    }
    return TemplateResponse(request, TEMPLATE, context, status=status)


@require_GET
@login_required
def customvision_import_status(request: HttpRequest, job_id: str) -> HttpResponse:
    """The progress partial the page polls until the import ends."""
    require_project_creator(request.user)
    job = get_customvision_import(job_id=job_id, user=request.user)
    return TemplateResponse(request, f"{TEMPLATE}#cv-import-status", {"job": job})
