"""A project's settings page: the project itself, its tags, its members, and your API token.

Every member may look (read-only below admin: the tag list, the member list, their own token);
every write needs the admin role except the token, which is the caller's own. Each section is
an inline partial of labeling/settings.html: an htmx form swaps just its section, a plain form
POSTs and is redirected back (POST/redirect/GET), and invalid input answers 422 with the section
(htmx) or the whole page re-rendered with the error in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.authtoken.models import Token

from labeling.access import access_project
from labeling.models import Project, Role, Tag
from labeling.services.projects import (
    add_member,
    create_tag,
    delete_tag,
    get_membership,
    get_tag,
    regenerate_api_token,
    remove_member,
    set_member_role,
    tags_with_image_counts,
    update_project,
    update_tag,
)
from project.errors import LoupeError

TEMPLATE = "labeling/settings.html"


# --- Forms: shape only; the rules are in labeling.services.projects ------------------------


class ProjectSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    domain = forms.ChoiceField(choices=Project.Domain.choices)


class TagCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=Tag.Kind.choices, initial=Tag.Kind.REGULAR)


class TagRenameForm(forms.Form):
    name = forms.CharField(max_length=100)


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput,
        help_text="Only to create the account when nobody has this username yet.",
    )


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


# --- The page ---------------------------------------------------------------------------------


@require_GET
@login_required
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    return _render(request, project, "settings-page")


@require_POST
@login_required
def project_update(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    form = ProjectSettingsForm(request.POST)
    return _submit(
        request,
        project,
        form,
        "project-section",
        "project_form",
        lambda data: update_project(project=project, by=request.user, **data),
        "Project settings saved.",
    )


# --- Tags -------------------------------------------------------------------------------------


@require_POST
@login_required
def tag_create(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    form = TagCreateForm(request.POST)
    return _submit(
        request,
        project,
        form,
        "tags-section",
        "tag_form",
        lambda data: create_tag(project=project, by=request.user, **data),
        "Tag added.",
    )


@require_POST
@login_required
def tag_update(request: HttpRequest, project_id: int, tag_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    tag = get_tag(project, tag_id)
    form = TagRenameForm(request.POST)
    return _submit(
        request,
        project,
        form,
        "tags-section",
        "rename_form",
        lambda data: update_tag(tag=tag, by=request.user, name=data["name"]),
        "Tag renamed.",
        extra={"rename_tag_id": tag.pk},
    )


@require_http_methods(["GET", "POST"])
@login_required
def tag_delete(request: HttpRequest, project_id: int, tag_id: int) -> HttpResponse:
    """GET: the confirmation, with how many images carry the tag. POST: delete it."""
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    tag = tags_with_image_counts(project).get(pk=get_tag(project, tag_id).pk)
    if request.method == "GET":
        section = "tag-delete-confirm" if request.htmx else "settings-page"
        return _render(request, project, section, {"confirm_tag": tag})
    delete_tag(tag=tag, by=request.user)
    return _done(request, project, "tags-section", f"Tag {tag.name!r} deleted.")


# --- Members ----------------------------------------------------------------------------------


@require_POST
@login_required
def member_add(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    form = MemberAddForm(request.POST)
    return _submit(
        request,
        project,
        form,
        "members-section",
        "member_form",
        lambda data: add_member(project=project, by=request.user, **data),
        "Member added.",
    )


@require_POST
@login_required
def member_update(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    membership = get_membership(project, membership_id)
    form = MemberRoleForm(request.POST)
    return _submit(
        request,
        project,
        form,
        "members-section",
        "role_form",
        lambda data: set_member_role(membership=membership, by=request.user, role=data["role"]),
        "Role changed.",
        extra={"role_membership_id": membership.pk},
    )


@require_POST
@login_required
def member_remove(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    membership = get_membership(project, membership_id)
    try:
        remove_member(membership=membership, by=request.user)
    except LoupeError as err:
        return _render(
            request,
            project,
            "members-section",
            {"members_error": err.message},
            status=err.http_status,
        )
    return _done(request, project, "members-section", "Member removed.")


# --- Your API token ---------------------------------------------------------------------------


@require_POST
@login_required
def api_token_regenerate(request: HttpRequest, project_id: int) -> HttpResponse:
    # Any member: the token is the caller's own; the project only gives the page it lives on.
    project = access_project(request.user, project_id)
    regenerate_api_token(user=request.user)
    return _done(request, project, "token-section", "New API token created.")


# --- Helpers ----------------------------------------------------------------------------------


def _submit(
    request: HttpRequest,
    project: Project,
    form: forms.Form,
    section: str,
    form_key: str,
    action: Callable[[dict[str, Any]], object],
    notice: str,
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    """Validate `form`, run `action(cleaned_data)`, and answer as the section's form wants."""
    if form.is_valid():
        try:
            action(form.cleaned_data)
        except LoupeError as err:
            form.add_error(None, err.message)
        else:
            return _done(request, project, section, notice)
    project.refresh_from_db()  # a refused edit must not show its unsaved values as saved
    return _render(request, project, section, {form_key: form, **(extra or {})}, status=422)


def _done(request: HttpRequest, project: Project, section: str, notice: str) -> HttpResponse:
    if not request.htmx:  # without JavaScript: POST/redirect/GET
        messages.success(request, notice)
        return redirect("labeling:project-settings", project.pk)
    return _render(request, project, section, {"notice": notice})


def _render(
    request: HttpRequest,
    project: Project,
    section: str,
    overrides: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The whole page, or (for htmx) just `section`; forms in `overrides` keep their errors."""
    is_admin = project.current_role == Role.ADMIN
    context: dict[str, Any] = {
        "project": project,
        "is_admin": is_admin,
        "project_form": ProjectSettingsForm(
            initial={
                "name": project.name,
                "description": project.description,
                "domain": project.domain,
            }
        ),
        "tag_form": TagCreateForm(),
        "member_form": MemberAddForm(),
        "tags": tags_with_image_counts(project),
        "memberships": project.memberships.select_related("user").order_by("user__username"),
        "role_choices": Role.choices,
        "api_token": Token.objects.filter(user=request.user).first(),
        **(overrides or {}),
    }
    name = TEMPLATE if not request.htmx or section == "settings-page" else f"{TEMPLATE}#{section}"
    return TemplateResponse(request, name, context, status=status)
