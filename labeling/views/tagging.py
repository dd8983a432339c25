"""The keyboard tagging view: one image large, its tags as buttons, keys to tag and move on.

The page's moving part is the `tagging-stage` partial of labeling/tagging.html (image, tag
buttons, the way to the neighbours). Navigation and saves swap only that partial with htmx and
push the image's URL, so a key press costs one request and no page load. The gallery's filter
rides along in the query string, so ← and → walk the same images in the same order.

A stored prediction under review (an image that is not training data yet, opened from the
Predictions tab with `?review=<image ids>`) is "review mode": a tag key never leaves the image
(auto-advance is for training images), ← and → walk the review queue, and the prediction panel's
Save and close (S) moves it into the training data and on to the next prediction.

An image opened from another app's list of images (a performance page's mispredicted images:
`?mispredicted=<iteration id>&threshold=…`, see labeling.image_sets) keeps that context: ← and →
walk that set, "back" returns to the page it came from, and the panel shows what the model
predicted beside the true labels.
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

from labeling.access import access_image, access_project, has_role, visible_images
from labeling.forms import ImageFilterForm, TagToggleForm, TagUndoForm
from labeling.image_sets import ImageSet, image_set_for
from labeling.models import Image, ImageTag, Project, Role, Tag
from labeling.services.images import (
    ImageFilter,
    Neighbours,
    delete_images,
    image_neighbours,
    ordered_neighbours,
)
from labeling.services.tagging import TagChange, restore_image_tags, toggle_image_tag
from project.errors import EditConflict, LoupeError
from project.ids import parse_optional_id

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
    """A tag key or button: toggle the tag; in multiclass with `advance`, tag and go next.

    Only adding a tag advances: a key that removes one stays on the image and says so, so the
    annotator sees the change and can undo it. A prediction under review never advances.
    """
    project = access_project(request.user, project_id)
    view = _TaggingView(request, project)
    image = view.image(image_id)
    form = TagToggleForm(request.POST, tags=view.tags)
    if not form.is_valid():
        return view.render(
            image, part="tag-form", status=422, error="Choose one of this project's tags."
        )
    try:
        change = toggle_image_tag(
            image=image,
            tag=form.cleaned_data["tag"],
            by=request.user,
            version=form.cleaned_data["version"],
        )
    except EditConflict as err:
        return view.render(image, part="tag-form", status=err.http_status, conflict=err.message)
    except LoupeError as err:
        return view.render(image, part="tag-form", status=err.http_status, error=err.message)
    image = change.image
    advance = (
        form.cleaned_data["advance"]
        and project.is_multiclass
        and bool(change.added)
        and not view.is_review(image)
    )
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
    return trigger_client_event(response, "tags-changed", view.change_event(change))


@require_POST
@login_required
def image_tag_undo(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    """U / Ctrl+Z: put back the tags the image had before the last change, and show it."""
    project = access_project(request.user, project_id)
    view = _TaggingView(request, project)
    image = view.image(image_id)
    form = TagUndoForm(request.POST)
    if not form.is_valid():
        return view.render(image, status=422, error="The change to undo could not be read.")
    try:
        change = restore_image_tags(
            image=image,
            tag_ids=form.cleaned_data["tags"],
            by=request.user,
            version=form.cleaned_data["version"],
        )
    except EditConflict as err:
        return view.render(image, status=err.http_status, conflict=err.message)
    except LoupeError as err:
        return view.render(image, status=err.http_status, error=err.message)
    if not request.htmx:
        return redirect(view.url(change.image))
    response = view.render(change.image)
    push_url(response, view.url(change.image))
    event = view.change_event(change)
    # The page says it in its change line; an undo is not itself undone by a second U.
    event.update(message=f"Undone: {change.describe()}", undo=None)
    return trigger_client_event(response, "tags-changed", event)


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
    """The request-scoped state the views share: project, tags, the filter, the review queue."""

    def __init__(self, request: HttpRequest, project: Project) -> None:
        self.request = request
        self.project = project
        self.tags: list[Tag] = list(project.tags.all())
        self.filter: ImageFilter = ImageFilterForm(request.GET, tags=self.tags).image_filter()
        # The predictions selected on the Predictions tab, in the tab's order ("Review selected").
        # A bad id in a shared link is dropped, not refused (project.ids checks the range).
        review = (parse_optional_id(part) for part in request.GET.get("review", "").split(","))
        self.review_ids: list[int] = [image_id for image_id in review if image_id is not None]
        # A set from another app (labeling.image_sets) replaces the gallery's filter.
        self.image_set: ImageSet | None = image_set_for(request.user, project, request.GET)
        params = self.image_set.params if self.image_set else self.filter.as_query()
        self.filter_query = f"?{urlencode(params)}" if params else ""
        if self.review_ids:
            params = {**params, "review": ",".join(map(str, self.review_ids))}
        self.query = f"?{urlencode(params, safe=',')}" if params else ""

    def image(self, image_id: int) -> Image:
        # The funnel: 404 for no such image, 403 for a stored prediction below reviewer. It sets
        # image.project, so the services read the project's kind and roles from it.
        return access_image(self.request.user, self.project, image_id)

    def url(self, image: Image) -> str:
        return reverse("labeling:image-tag", args=[self.project.pk, image.pk]) + self.query

    def gallery_url(self) -> str:
        return reverse("labeling:project-detail", args=[self.project.pk]) + self.filter_query

    def is_review(self, image: Image) -> bool:
        """A stored prediction (not training data yet), or one of the review queue's images."""
        return not image.is_training or image.pk in self.review_ids

    def neighbours(self, image: Image) -> Neighbours:
        if self.is_review(image):
            return self._queue_neighbours(image)
        if self.image_set is not None:
            return self._set_neighbours(image, self.image_set)
        images = self.filter.apply(self.project.images.all())
        untagged = self.project.images.training().untagged()
        order = self.filter.walk_order(self.project)
        if order is not None:  # an extension's filter with its own order (suggestions by gain)
            return ordered_neighbours(images, order, image, untagged=untagged)
        return image_neighbours(images, image, untagged=untagged)

    def _queue_neighbours(self, image: Image) -> Neighbours:
        """In review, ← and → walk the review queue: never off to the training images."""
        if image.pk not in self.review_ids:
            return Neighbours(previous=None, next=None, next_untagged=None)
        at = self.review_ids.index(image.pk)
        wanted = self.review_ids[max(at - 1, 0) : at + 2]
        rows = visible_images(self.request.user, self.project).filter(pk__in=wanted)
        rows = rows.only("pk", "file", "project_id")
        found = {row.pk: row for row in rows}
        before = self.review_ids[at - 1] if at > 0 else None
        after = self.review_ids[at + 1] if at + 1 < len(self.review_ids) else None
        return Neighbours(
            previous=found.get(before) if before else None,
            next=found.get(after) if after else None,
            next_untagged=None,
        )

    def _set_neighbours(self, image: Image, image_set: ImageSet) -> Neighbours:
        """In a set from another app, ← and → walk that set (N has no place in it)."""
        before, after = image_set.neighbours(image.pk)
        wanted = [i for i in (before, after) if i is not None]
        rows = self.project.images.training().filter(pk__in=wanted).only("pk", "file", "project_id")
        found = {row.pk: row for row in rows}
        return Neighbours(
            previous=found.get(before) if before else None,
            next=found.get(after) if after else None,
            next_untagged=None,
        )

    def change_event(self, change: TagChange) -> dict[str, Any]:
        """The `tags-changed` event's detail: what to tell the annotator and how to undo it."""
        image = change.image
        return {
            "image_id": image.pk,
            "image_name": str(image),
            "message": change.describe(),
            "undo": {
                "url": reverse("labeling:image-tag-undo", args=[self.project.pk, image.pk])
                + self.query,
                "image_url": self.url(image),
                "tags": ",".join(str(tag.pk) for tag in change.before),
                "version": image.version,
            },
        }

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
            "is_review": self.is_review(image),
            "toggle_url": reverse("labeling:image-tag-toggle", args=[self.project.pk, image.pk])
            + self.query,
        }

    def _stage_context(self, image: Image) -> dict[str, Any]:
        around = self.neighbours(image)
        review = self.is_review(image)
        context = {
            "filter_label": self._review_label(image) if review else self._filter_label(),
            "delete_url": reverse("labeling:image-delete", args=[self.project.pk, image.pk])
            + self.query,
            # A prediction under review is dismissed, not deleted (the panel's D).
            "can_delete": not review and has_role(self.request.user, self.project, Role.REVIEWER),
            "show_delete": not review,
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
            "back_url": self._predictions_url() if review else self.gallery_url(),
            "back_label": "Predictions" if review else "Gallery",
            "boxes_url": self._boxes_url(image) if self.project.is_detection else "",
        }
        if self.image_set is not None and not review:
            context.update(self._set_context(image))
        return context

    def _filter_label(self) -> str:
        if self.filter.tag_id is not None:
            return next((f"Tag “{t.name}”" for t in self.tags if t.pk == self.filter.tag_id), "")
        return self.filter.status_label

    def _set_context(self, image: Image) -> dict[str, Any]:
        """Where the image came from and what the model said about it (labeling.image_sets)."""
        image_set = self.image_set
        assert image_set is not None
        position = image_set.position(image.pk)
        return {
            "filter_label": f"{image_set.label} · {position or 'not in this set'}",
            "back_url": image_set.back_url,
            "back_label": image_set.back_label,
            "model_prediction": image_set.prediction(image.pk),
        }

    def _review_label(self, image: Image) -> str:
        if image.pk in self.review_ids:
            at = self.review_ids.index(image.pk) + 1
            return f"Review: prediction {at} of {len(self.review_ids)}"
        return "Stored prediction" if not image.is_training else "Review"

    def _predictions_url(self) -> str:
        # The Predictions tab belongs to the predictions app; a URL name keeps the apps apart.
        try:
            return reverse("predictions:prediction-list", args=[self.project.pk])
        except NoReverseMatch:
            return self.gallery_url()

    def _boxes_url(self, image: Image) -> str:
        # The box editor is its own screen (another part of the app); link to it once it exists.
        try:
            return reverse("labeling:image-boxes", args=[self.project.pk, image.pk])
        except NoReverseMatch:
            return ""
