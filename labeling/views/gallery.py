"""The gallery, a project's home: training images with filters, counts, pages and bulk actions.

htmx requests get only the part they target (`HX-Target`: gallery-body, filter-bar or
image-grid), rendered from the inline partials of labeling/gallery.html; bulk actions answer
with the refreshed grid and fire `gallery-changed`, on which the filter bar reloads its counts.

Apps built on labeling add filters, thumbnail badges and panels through
labeling.gallery_extensions (predictions: suggested tags), never by being imported here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from labeling.access import access_project, has_role
from labeling.forms import BulkActionForm, ImageFilterForm
from labeling.gallery_extensions import ThumbNote, extra_filters, gallery_extensions
from labeling.image_sets import image_set_for
from labeling.models import Image, ImageTag, Project, Role, SavedFilter
from labeling.services.images import (
    browse_images,
    browse_ordered,
    count_training_images_per_tag,
    delete_images,
)
from labeling.services.saved_filters import (
    can_delete_filter,
    delete_filter,
    describe,
    gallery_query,
    get_saved_filter,
    resolve_filter,
    save_filter,
)
from labeling.services.tagging import add_tags_to_images, remove_tags_from_images
from project.errors import LoupeError, ValidationFailed

TEMPLATE = "labeling/gallery.html"
PARTIALS = {"gallery-body", "filter-bar", "image-grid", "saved-filters"}


@require_GET
@login_required
def gallery(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    context = gallery_context(request, project, request.GET)
    return _render(request, context)


@require_POST
@login_required
def image_bulk(request: HttpRequest, project_id: int) -> HttpResponse:
    """Tag, untag or delete the selected images, then show the same page of the gallery."""
    project = access_project(request.user, project_id)
    form = BulkActionForm(request.POST, project=project)
    status, notice, error = 200, "", ""
    try:
        if not form.is_valid():
            raise ValidationFailed(_first_error(form))
        notice = _run_bulk_action(project, request.user, form.cleaned_data)
    except LoupeError as err:
        status, error = err.http_status, err.message
    if not request.htmx and not error:  # without JavaScript: POST/redirect/GET
        messages.success(request, notice)
        query = _filter_query(ImageFilterForm(request.GET, tags=list(project.tags.all())))
        return redirect(reverse("labeling:project-detail", args=[project.pk]) + query)
    # The filter and page ride in the query string, so the answer is the page the user was on.
    context = gallery_context(request, project, request.GET)
    context.update(notice=notice, error=error)
    response = _render(request, context, status=status, partial="image-grid")
    if not error:
        trigger_client_event(response, "gallery-changed")
    return response


@require_POST
@login_required
def saved_filter_create(request: HttpRequest, project_id: int) -> HttpResponse:
    """Save the gallery's filter (the query string, as the gallery reads it) under a name.

    Without JavaScript: POST/redirect/GET to the gallery with the filter applied. With htmx:
    the saved-filters part, re-rendered (422 with the message for a bad name).
    """
    project = access_project(request.user, project_id)
    image_filter = ImageFilterForm(request.GET, tags=list(project.tags.all())).image_filter()
    name = request.POST.get("name", "")
    try:
        saved = save_filter(
            project=project,
            name=name,
            by=request.user,
            status=image_filter.status,
            tag_ids=[image_filter.tag_id] if image_filter.tag_id is not None else [],
        )
    except LoupeError as err:
        context = gallery_context(request, project, request.GET)
        context.update(filter_error=err.message, filter_name=name)
        partial = "saved-filters" if request.htmx else ""
        return _render(request, context, status=err.http_status, partial=partial)
    return _saved_filters_changed(request, project, f"Saved the filter “{saved.name}”.")


@require_POST
@login_required
def saved_filter_delete(
    request: HttpRequest, project_id: int, saved_filter_id: int
) -> HttpResponse:
    """Delete a saved filter (its creator or an admin), then show the gallery as it was."""
    project = access_project(request.user, project_id)
    saved = get_saved_filter(project, saved_filter_id)
    delete_filter(saved_filter=saved, by=request.user)
    return _saved_filters_changed(request, project, f"Deleted the saved filter “{saved.name}”.")


def _saved_filters_changed(request: HttpRequest, project: Project, notice: str) -> HttpResponse:
    """After a save or delete: the gallery as it was (POST/redirect/GET), or htmx's partial."""
    if not request.htmx:
        messages.success(request, notice)
        query = _filter_query(ImageFilterForm(request.GET, tags=list(project.tags.all())))
        return redirect(reverse("labeling:project-detail", args=[project.pk]) + query)
    context = gallery_context(request, project, request.GET)
    context.update(filter_notice=notice)
    return _render(request, context, partial="saved-filters")


def _saved_filters(
    request: HttpRequest, project: Project, tags: list[Any], base_query: dict[str, str]
) -> list[dict[str, Any]]:
    """The project's saved filters as the gallery lists them: name, link, what it selects."""
    names = {tag.pk: tag.name for tag in tags}
    gallery_url = reverse("labeling:project-detail", args=[project.pk])
    current = urlencode(base_query)
    listed = []
    for saved in SavedFilter.objects.filter(project=project):
        saved.project = project  # one Project row: its role cache answers can_delete_filter
        resolved = resolve_filter(saved, project_tag_ids=names.keys())
        query = urlencode(gallery_query(resolved))
        listed.append(
            {
                "id": saved.pk,
                "name": saved.name,
                "url": f"{gallery_url}?{query}" if query else gallery_url,
                "description": describe(resolved, names),
                "is_active": query == current,
                "can_delete": can_delete_filter(request.user, saved),
                # The gallery's query rides along: the redirect shows the page the user was on.
                "delete_url": _with_query(
                    reverse("labeling:saved-filter-delete", args=[project.pk, saved.pk]),
                    base_query,
                ),
            }
        )
    return listed


def _run_bulk_action(project: Project, user: Any, data: dict[str, Any]) -> str:
    ids, tag = data["image_ids"], data["tag"]
    if data["action"] == "delete":
        count = delete_images(project=project, image_ids=ids, by=user)
        return f"Deleted {count} image{'s' if count != 1 else ''}."
    if data["action"] == "tag":
        count = add_tags_to_images(project=project, image_ids=ids, tags=[tag], by=user)
        return f"Tagged {count} image{'s' if count != 1 else ''} “{tag.name}”."
    count = remove_tags_from_images(
        project=project, image_ids=ids, tags=[tag] if tag else [], by=user
    )
    what = f"“{tag.name}”" if tag else "all tags"
    return f"Removed {what} from {count} image{'s' if count != 1 else ''}."


def gallery_context(request: HttpRequest, project: Project, query: QueryDict) -> dict[str, Any]:
    """Everything the gallery shows; a constant number of queries whatever the page."""
    tags = list(project.tags.all())
    form = ImageFilterForm(query, tags=tags)
    image_filter = form.image_filter()
    images = image_filter.apply(project.images.all())
    # A set another app names (`?mispredicted=<iteration id>&threshold=…`: labeling.image_sets)
    # narrows the grid to it, and every link below keeps it.
    image_set = image_set_for(request.user, project, query)
    if image_set is not None:
        images = images.filter(pk__in=image_set.image_ids)
    base_query = image_set.params if image_set else image_filter.as_query()
    order = image_filter.walk_order(project) if image_set is None else None
    page = (
        browse_images(images, **form.cursors())
        if order is None
        else browse_ordered(images, order, **form.cursors())
    )
    _attach_tag_names(page.images, project)
    _attach_notes(page.images)
    training = project.images.training()
    counts = training.label_counts()
    per_tag = count_training_images_per_tag(project)
    gallery_url = reverse("labeling:project-detail", args=[project.pk])
    filter_query = urlencode(base_query)
    cursor = {k: v for k, v in form.cursors().items() if v is not None}

    def link(**params: Any) -> str:
        return _with_query(gallery_url, {**base_query, **params})

    filters = [
        {"key": "all", "label": "All", "count": counts["all"], "query": ""},
        {"key": "tagged", "label": "Tagged", "count": counts["tagged"], "query": "filter=tagged"},
        {
            "key": "untagged",
            "label": "Untagged",
            "count": counts["untagged"],
            "query": "filter=untagged",
        },
    ]
    for extra in extra_filters():
        count = extra.narrow(training).count()
        if count or not extra.hide_when_empty or image_filter.key == extra.key:
            query = urlencode({"filter": extra.key})
            filters.append({"key": extra.key, "label": extra.label, "count": count, "query": query})
    filters += [
        {
            "key": f"tag-{tag.pk}",
            "label": tag.name,
            "count": per_tag.get(tag.pk, 0),
            "query": f"tag={tag.pk}",
            "is_negative": tag.is_negative,
        }
        for tag in tags
    ]
    for item in filters:
        item["url"] = f"{gallery_url}?{item['query']}" if item["query"] else gallery_url
        item["is_active"] = item["key"] == image_filter.key
    return {
        "project": project,
        "tags": tags,
        "filters": filters,
        "active_filter": next(f for f in filters if f["is_active"]),
        "page": page,
        "gallery_url": gallery_url,
        "filter_query": filter_query,
        "bulk_url": _with_query(
            reverse("labeling:image-bulk", args=[project.pk]), {**base_query, **cursor}
        ),
        "image_set": image_set,
        "refresh_url": link(),
        "first_url": link() if page.newer_cursor else "",
        "newer_url": link(before=page.newer_cursor) if page.newer_cursor else "",
        "older_url": link(after=page.older_cursor) if page.older_cursor else "",
        "can_delete": has_role(request.user, project, Role.REVIEWER),
        # Boxes are drawn one image at a time: a detection project has no bulk Tag/Untag.
        "can_bulk_tag": bool(tags) and not project.is_detection,
        "panels": _panels(request, project),
        "saved_filters": _saved_filters(request, project, tags, base_query),
        # Saving names the gallery's own filter; a set another app computed is not one.
        "save_filter_url": ""
        if image_set
        else _with_query(
            reverse("labeling:saved-filter-create", args=[project.pk]), image_filter.as_query()
        ),
        "filter_description": image_filter.status_label
        if image_filter.tag_id is None
        else next((f"Tag “{t.name}”" for t in tags if t.pk == image_filter.tag_id), ""),
    }


def _attach_tag_names(images: list[Image], project: Project) -> None:
    """`image.tag_names` for the thumbnails' captions, in one query of plain values."""
    names: dict[int, list[str]] = {image.pk: [] for image in images}
    if names and not project.is_detection:
        labels = ImageTag.objects.filter(image_id__in=names).order_by("tag_id")
        for image_id, name in labels.values_list("image_id", "tag__name"):
            names[image_id].append(name)
    for image in images:
        image.tag_names = names[image.pk]  # type: ignore[attr-defined]


def _attach_notes(images: list[Image]) -> None:
    """`image.notes`: the badges other apps put on the thumbnails (labeling.gallery_extensions)."""
    notes: dict[int, list[ThumbNote]] = {image.pk: [] for image in images}
    for extension in gallery_extensions():
        if extension.notes is not None and images:
            for image_id, added in extension.notes(images).items():
                notes.setdefault(image_id, []).extend(added)
    for image in images:
        image.notes = notes[image.pk]  # type: ignore[attr-defined]


def _panels(request: HttpRequest, project: Project) -> list[dict[str, Any]]:
    """Other apps' blocks above the grid: `{"template", "panel"}` for each that has one."""
    panels = []
    for extension in gallery_extensions():
        if extension.panel_template and extension.panel_context is not None:
            context = extension.panel_context(request, project)
            if context is not None:
                panels.append({"template": extension.panel_template, "panel": context})
    return panels


def _render(
    request: HttpRequest, context: dict[str, Any], *, status: int = 200, partial: str = ""
) -> TemplateResponse:
    target = (partial or request.htmx.target) if request.htmx else None
    if target in PARTIALS and not request.htmx.history_restore_request:
        name = f"{TEMPLATE}#{target}"
    else:
        name = TEMPLATE
    response = TemplateResponse(request, name, context, status=status)
    # One URL answers a page or a partial: caches (and the back button) must tell them apart.
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def _filter_query(form: ImageFilterForm) -> str:
    params = {
        **form.image_filter().as_query(),
        **{k: v for k, v in form.cursors().items() if v is not None},
    }
    return _with_query("", params)


def _with_query(url: str, params: dict[str, Any]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def _first_error(form: BulkActionForm) -> str:
    for errors in form.errors.values():
        return str(errors[0])
    return "The request is not valid."
