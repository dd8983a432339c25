"""The keyboard tagging view: one image large, its tags as buttons, keys to tag and move on.

The page's moving part is the `tagging-stage` partial of labeling/tagging.html (image, tag
buttons, the way to the neighbours). Navigation and saves swap only that partial with htmx and
push the image's URL, so a key press costs one request and no page load. The gallery's filter
rides along in the query string, so ← and → walk the same images in the same order.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import (
    HttpResponseClientRedirect,
    push_url,
    retarget,
    trigger_client_event,
)

from labeling.access import access_project, has_role
from labeling.forms import ImageFilterForm, TagToggleForm
from labeling.models import Image, ImageTag, Project, Role, Tag
from labeling.services.images import ImageFilter, Neighbours, delete_images, image_neighbours
from labeling.services.tagging import choose_image_tag, toggle_image_tag
from project.errors import EditConflict, LoupeError, NotFound

TEMPLATE = "labeling/tagging.html"
TAG_KEYS = 9  # keys 1-9 map to the project's first nine tags in display order


@require_GET
@login_required
def image_tag(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    view = _TaggingView(request, project)
    return view.render(view.image(image_id))


@require_POST
@login_required
def image_tag_toggle(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    """A tag key or button: toggle the tag; in multiclass with `advance`, tag and go next."""
    project = access_project(request.user, project_id)
    view = _TaggingView(request, project)
    image = view.image(image_id)
    form = TagToggleForm(request.POST, tags=view.tags)
    if not form.is_valid():
        return view.render(
            image, part="tag-form", status=422, error="Choose one of this project's tags."
        )
    advance = form.cleaned_data["advance"] and project.is_multiclass
    save = choose_image_tag if advance else toggle_image_tag
    try:
        image = save(
            image=image,
            tag=form.cleaned_data["tag"],
            by=request.user,
            version=form.cleaned_data["version"],
        )
    except EditConflict as err:
        return view.render(image, part="tag-form", status=err.http_status, conflict=err.message)
    except LoupeError as err:
        return view.render(image, part="tag-form", status=err.http_status, error=err.message)
    shown = (view.neighbours(image).next or image) if advance else image
    if not request.htmx:  # without JavaScript: POST/redirect/GET
        return redirect(view.url(shown))
    if not advance:
        # The image stays: only its buttons and version change.
        response = view.render(image, part="tag-form")
    else:
        notice = "" if shown is not image else "Saved. That was the last image here."
        response = retarget(view.render(shown, notice=notice), "#tagging-stage")
        if shown is not image:
            push_url(response, view.url(shown))
    return trigger_client_event(response, "tags-changed", {"image_id": image.pk})


@require_POST
@login_required
def image_delete(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    """Delete the image (reviewers and admins) and show the next one of the same filter."""
    project = access_project(request.user, project_id)
    view = _TaggingView(request, project)
    image = view.image(image_id)
    around = view.neighbours(image)
    try:
        delete_images(project=project, image_ids=[image.pk], by=request.user)
    except LoupeError as err:
        return view.render(image, error=err.message, status=err.http_status)
    shown = around.next or around.previous
    if shown is None:
        gallery_url = view.gallery_url()
        return HttpResponseClientRedirect(gallery_url) if request.htmx else redirect(gallery_url)
    if not request.htmx:
        return redirect(view.url(shown))
    response = view.render(shown, notice="Image deleted.")
    return push_url(response, view.url(shown))


class _TaggingView:
    """The request-scoped state the three views share: project, tags and the active filter."""

    def __init__(self, request: HttpRequest, project: Project) -> None:
        self.request = request
        self.project = project
        self.tags: list[Tag] = list(project.tags.all())
        self.filter: ImageFilter = ImageFilterForm(request.GET, tags=self.tags).image_filter()
        query = urlencode(self.filter.as_query())
        self.query = f"?{query}" if query else ""

    def image(self, image_id: int) -> Image:
        image = self.project.images.filter(pk=image_id).first()
        if image is None:
            raise NotFound("This image does not exist in this project.")
        image.project = self.project  # the services read the project's kind and roles from it
        return image

    def url(self, image: Image) -> str:
        return reverse("labeling:image-tag", args=[self.project.pk, image.pk]) + self.query

    def gallery_url(self) -> str:
        return reverse("labeling:project-detail", args=[self.project.pk]) + self.query

    def neighbours(self, image: Image) -> Neighbours:
        images = self.filter.apply(self.project.images.all())
        return image_neighbours(images, image, untagged=self.project.images.training().untagged())

    def render(
        self,
        image: Image,
        *,
        part: str = "tagging-stage",
        status: int = 200,
        notice: str = "",
        error: str = "",
        conflict: str = "",
    ) -> TemplateResponse:
        """The page, or for htmx the `part` ("tagging-stage" or "tag-form") of it."""
        htmx = self.request.htmx
        partial = (
            bool(htmx)
            and not htmx.history_restore_request
            and (self.request.method == "POST" or htmx.target == part)
        )
        context = self._form_context(image)
        if not partial or part == "tagging-stage":
            context.update(self._stage_context(image))
        context.update(notice=notice, error=error, conflict=conflict)
        name = f"{TEMPLATE}#{part}" if partial else TEMPLATE
        response = TemplateResponse(self.request, name, context, status=status)
        # One URL answers a page or a partial: caches (and the back button) must tell them apart.
        patch_vary_headers(response, ("HX-Request", "HX-Target"))
        return response

    def _form_context(self, image: Image) -> dict[str, Any]:
        current = set(ImageTag.objects.filter(image=image).values_list("tag_id", flat=True))
        return {
            "project": self.project,
            "image": image,
            "image_url": self.url(image),
            "tag_buttons": [
                {"tag": tag, "key": n if n <= TAG_KEYS else None, "is_on": tag.pk in current}
                for n, tag in enumerate(self.tags, start=1)
            ],
            "is_tagged": bool(current),
            "toggle_url": reverse("labeling:image-tag-toggle", args=[self.project.pk, image.pk])
            + self.query,
        }

    def _stage_context(self, image: Image) -> dict[str, Any]:
        around = self.neighbours(image)
        return {
            "filter_label": self._filter_label(),
            "delete_url": reverse("labeling:image-delete", args=[self.project.pk, image.pk])
            + self.query,
            "can_delete": has_role(self.request.user, self.project, Role.REVIEWER),
            "previous_url": self.url(around.previous) if around.previous else "",
            "next_url": self.url(around.next) if around.next else "",
            "next_untagged_url": self.url(around.next_untagged) if around.next_untagged else "",
            # The neighbours' files, fetched ahead so the next image shows without waiting.
            "preload": list(
                dict.fromkeys(
                    i.file.url
                    for i in (around.next, around.previous, around.next_untagged)
                    if i is not None and i.file
                )
            ),
            "gallery_url": self.gallery_url(),
            "boxes_url": self._boxes_url(image) if self.project.is_detection else "",
        }

    def _filter_label(self) -> str:
        if self.filter.tag_id is not None:
            return next((f"Tag “{t.name}”" for t in self.tags if t.pk == self.filter.tag_id), "")
        return {"all": "All images", "tagged": "Tagged images", "untagged": "Untagged images"}[
            self.filter.status
        ]

    def _boxes_url(self, image: Image) -> str:
        # The box editor is its own screen (another part of the app); link to it once it exists.
        try:
            return reverse("labeling:image-boxes", args=[self.project.pk, image.pk])
        except NoReverseMatch:
            return ""
