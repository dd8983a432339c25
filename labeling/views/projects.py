"""Project list and creation."""

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods

from labeling.access import visible_projects
from labeling.forms import ProjectForm
from labeling.services.projects import create_project
from project.errors import LoupeError


@require_GET
@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    projects = (
        visible_projects(request.user)
        .annotate(
            image_count=Count("images", filter=Q(images__is_training=True), distinct=True),
            tag_count=Count("tags", distinct=True),
        )
        .order_by("-created", "-id")
    )
    return TemplateResponse(request, "labeling/project_list.html", {"projects": projects})


@require_http_methods(["GET", "POST"])
@login_required
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if form.is_valid():
        try:
            project = create_project(by=request.user, **form.cleaned_data)
        except LoupeError as err:
            form.add_error(None, err.message)
        else:
            return redirect("labeling:project-detail", project.id)
    return TemplateResponse(
        request, "labeling/project_create.html", {"form": form}, status=422 if form.errors else 200
    )
