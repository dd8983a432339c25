"""Project list, creation and deletion."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods

from labeling.access import (
    access_project,
    can_create_projects,
    require_project_creator,
    visible_projects,
)
from labeling.forms import ProjectForm
from labeling.models import Role
from labeling.services.projects import create_project, delete_project
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
    context = {"projects": projects, "can_create": can_create_projects(request.user)}
    return TemplateResponse(request, "labeling/project_list.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def project_create(request: HttpRequest) -> HttpResponse:
    # Checked before the form too: a user who may not create sees why, not a form that fails.
    require_project_creator(request.user)
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


class ProjectDeleteForm(forms.Form):
    confirm_name = forms.CharField(max_length=200, strip=False)


@require_http_methods(["GET", "POST"])
@login_required
def project_delete(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: what deleting takes away and a field for the project's name. POST: delete it."""
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    form = ProjectDeleteForm(request.POST or None)
    if form.is_valid():
        name = project.name
        try:
            delete_project(
                project=project, by=request.user, confirm_name=form.cleaned_data["confirm_name"]
            )
        except LoupeError as err:
            form.add_error("confirm_name", err.message)
        else:
            messages.success(request, f"Project “{name}” deleted.")
            return redirect("labeling:project-list")
    context = {"project": project, "form": form, "image_count": project.images.count()}
    return TemplateResponse(
        request,
        "labeling/project_delete.html",
        context,
        status=422 if form.errors else 200,
    )
