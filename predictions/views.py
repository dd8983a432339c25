"""HTML views of predictions: keys, quick test, the Predictions tab and its triage actions.

Thin: parse, call one service, render or redirect. Triage actions are plain POST/redirect/GET
forms; their outcome is shown with Django messages on the page they lead to.
"""

from __future__ import annotations

import base64
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event
from PIL import Image as PILImage

from labeling.access import access_image, access_project
from labeling.models import Project, Role
from predictions.gallery import suggestion_panel
from predictions.models import Prediction
from predictions.services.keys import create_key, revoke_key, rotate_key
from predictions.services.predict import quick_test as run_quick_test
from predictions.services.ranking import (
    SORTS,
    default_iteration,
    iterations_with_predictions,
    other_open_iterations,
    ranked_predictions,
)
from predictions.services.similar import training_images_like_upload
from predictions.services.suggestions import (
    accept_suggestion,
    accept_suggestions_above,
    request_suggestions,
)
from predictions.services.triage import (
    dismiss_predictions,
    next_in_review,
    open_for_review,
    promote_prediction,
    review_summary,
)
from project.errors import LoupeError, NotFound
from project.hosts import absolute_url
from project.ids import parse_ids, parse_optional_id
from training.services.publishing import current_iteration
from training.services.saliency import keep_upload

# --- Prediction keys (admins) ----------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def key_list(request: HttpRequest, project_id: int) -> HttpResponse:
    """List keys; POST action=create (name), rotate or revoke (key_id). A new secret is shown
    once, in this response, and never again."""
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    issued, error, status = None, "", 200
    if request.method == "POST":
        action = request.POST.get("action", "create")
        try:
            if action == "create":
                issued = create_key(
                    project=project, name=request.POST.get("name", ""), by=request.user
                )
            elif action == "rotate":
                issued = rotate_key(
                    project=project, key_id=_int(request.POST.get("key_id")), by=request.user
                )
            elif action == "revoke":
                key = revoke_key(
                    project=project, key_id=_int(request.POST.get("key_id")), by=request.user
                )
                messages.success(request, f"The key “{key.name}” is revoked.")
                return redirect("predictions:key-list", project.pk)
            else:
                raise NotFound("Unknown action.")
        except LoupeError as err:
            error, status = err.message, err.http_status
    context = {
        "project": project,
        "keys": list(project.prediction_keys.all()),
        "issued": issued,
        "error": error,
        "endpoint": absolute_url(request, f"/api/predict/{project.pk}/"),
        # Custom Vision SDK code needs only the site's root; its project id may be our integer.
        "site": absolute_url(request, "/"),
        "iterations": list(project.iterations.published()),
    }
    return TemplateResponse(request, "predictions/keys.html", context, status=status)


def _int(value: Any) -> int:
    number = parse_optional_id(value)
    if number is None:
        raise NotFound("Choose an item of this project.")
    return number


# --- Quick test (members) --------------------------------------------------------------------


class QuickTestForm(forms.Form):
    iteration = forms.TypedChoiceField(coerce=int)
    image = forms.FileField(required=False)
    # Checked by predictions.services.fetch (scheme, public address), not by a URL regex.
    url = forms.CharField(required=False, max_length=2000, strip=True)
    store = forms.BooleanField(required=False)

    def __init__(self, *args: Any, iterations: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["iteration"].choices = [
            (it.pk, f"{it} (default)" if it.is_default else str(it)) for it in iterations
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("image")) == bool(data.get("url")):
            raise forms.ValidationError("Choose an image file or give an image URL (one of them).")
        return data


@require_http_methods(["GET", "POST"])
@login_required
def quick_test(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    iterations = list(project.iterations.completed().exclude(artifact="").order_by("-number"))
    current = current_iteration(project, with_model=True)
    bound = request.method == "POST"
    form = QuickTestForm(
        request.POST if bound else None,
        request.FILES if bound else None,
        iterations=iterations,
        initial={"iteration": current.pk if current else None},
    )
    context: dict[str, Any] = {
        "project": project,
        "form": form,
        "iterations": iterations,
        "current": current,
    }
    status = 200
    if request.method == "POST":
        if form.is_valid():
            upload, url = form.cleaned_data["image"], form.cleaned_data["url"]
            try:
                result = run_quick_test(
                    project=project,
                    iteration_id=form.cleaned_data["iteration"],
                    data=upload.read() if upload else None,
                    name=upload.name if upload else "",
                    url=url,
                    store=form.cleaned_data["store"],
                    by=request.user,
                )
            except LoupeError as err:
                form.add_error("url" if url else "image", err.message)
            else:
                mime = PILImage.MIME.get(result.image.format, "image/jpeg")
                context.update(
                    results=result.outcome.results,
                    is_detection=result.target.is_detection,
                    uncertainty=result.outcome.uncertainty,
                    prediction=result.prediction,
                    tested_name=result.name,
                    preview=f"data:{mime};base64,{base64.b64encode(result.image.data).decode()}",
                )
                context.update(  # "Where the model looked" reads the kept bytes later
                    where_looked_iteration=result.target.iteration_id,
                    where_looked_upload=keep_upload(
                        iteration_id=result.target.iteration_id, data=result.image.data
                    ),
                )
                like = training_images_like_upload(project=project, by=request.user, result=result)
                if like is not None:  # None when stored: "More like this" links its image
                    context["like"] = like
        if form.errors:
            status = 422
    return TemplateResponse(request, "predictions/quick_test.html", context, status=status)


# --- The Predictions tab (reviewers and admins) --------------------------------------------------


@require_GET
@login_required
def prediction_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    iterations = iterations_with_predictions(project)
    current = current_iteration(project)
    chosen = _chosen_iteration(request, project, iterations, current)
    sort = request.GET.get("sort", "gain")
    sort = sort if sort in SORTS else "gain"
    tags = list(project.tags.all())
    tag_id = _optional_int(request.GET.get("tag"))
    if sort in ("lowest", "highest") and tag_id is None and tags:
        tag_id = tags[0].pk
    # A page past the last one is empty; one past this bound is surely a typo.
    page_number = min(_optional_int(request.GET.get("page")) or 1, 100_000)
    page, open_count, open_elsewhere = None, 0, []
    if chosen is not None:
        page = ranked_predictions(
            project=project, iteration_id=chosen.pk, sort=sort, tag_id=tag_id, page=page_number
        )
        # How much is left to review, shown above the grid (Most gain counted it already).
        open_count = page.open_count
        if open_count is None:  # one COUNT on prediction_newest_idx
            open_count = Prediction.objects.open().filter(iteration_id=chosen.pk).count()
        if not open_count:  # nothing to review here: point at the iterations that have some
            open_elsewhere = other_open_iterations(iterations, chosen)
    context = {
        "project": project,
        "iterations": iterations,
        "iteration": chosen,
        "current": current,
        # Suggest tags runs a model: the current iteration among those with a model file.
        "suggest_with": current
        if current is not None and current.artifact
        else current_iteration(project, with_model=True),
        "open_elsewhere": open_elsewhere,
        "sorts": SORTS,
        "sort": sort,
        "tags": tags,
        "tag_id": tag_id,
        "page": page,
        "open_count": open_count,
        "next_query": f"iteration={chosen.pk if chosen else ''}&sort={sort}"
        + (f"&tag={tag_id}" if tag_id else "")
        + f"&page={page_number + 1}",
    }
    name = "predictions/predictions.html"
    if request.htmx and request.htmx.target == "prediction-grid":
        name += "#prediction-grid"
    return TemplateResponse(request, name, context)


def _optional_int(value: str | None) -> int | None:
    """A whole number from a query or form field (ids, versions, pages: all within the
    database's 64-bit range), or None for a missing or bad one."""
    if value == "0":
        return 0
    return parse_optional_id(value)


def _chosen_iteration(
    request: HttpRequest, project: Any, iterations: list[Any], current: Any
) -> Any:
    wanted = _optional_int(request.GET.get("iteration"))
    if wanted is not None:
        for iteration in iterations:
            if iteration.pk == wanted:
                return iteration
    return default_iteration(project, iterations, current)


def _image_ids(request: HttpRequest) -> list[int]:
    """The ticked images; InvalidId (a LoupeError naming the field) for one that is no id."""
    ids: list[int] = []
    for value in request.POST.getlist("image_ids"):
        ids.extend(parse_ids(value, field="image_ids"))
    return ids


def _tab_url(project_id: int, request: HttpRequest) -> str:
    query = request.POST.get("return_query", "")
    url = reverse("predictions:prediction-list", args=[project_id])
    return f"{url}?{query}" if query else url


def _review_url(project_id: int, image_id: int, queue: list[int]) -> str:
    """The tagging view of one prediction; `?review=` carries the whole queue, in order."""
    url = reverse("labeling:image-tag", args=[project_id, image_id])
    return f"{url}?review={','.join(str(i) for i in queue)}" if queue else url


@require_POST
@login_required
def prediction_review(request: HttpRequest, project_id: int) -> HttpResponse:
    """Open the selected predictions in the tagging view, pre-filled with their labels."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    try:
        queue = open_for_review(project=project, image_ids=_image_ids(request), by=request.user)
    except LoupeError as err:
        messages.error(request, err.message)
        return redirect(_tab_url(project.pk, request))
    return redirect(_review_url(project.pk, queue[0], queue))


@require_POST
@login_required
def prediction_dismiss(request: HttpRequest, project_id: int) -> HttpResponse:
    """Dismiss the ticked predictions (the tab), or the one under review (D in the review)."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    ids: list[int] = []
    try:
        ids = _image_ids(request)
        count = dismiss_predictions(project=project, image_ids=ids, by=request.user)
    except LoupeError as err:
        messages.error(request, err.message)
        if request.POST.get("from_review") and ids:
            return redirect(_review_url(project.pk, ids[0], _queue(request)))
        return redirect(_tab_url(project.pk, request))
    done = f"Dismissed {count} prediction{'s' if count != 1 else ''}."
    if request.POST.get("from_review") and ids:
        return _go_on_reviewing(request, project, ids[0], done)
    messages.success(request, done)
    return redirect(_tab_url(project.pk, request))


def _queue(request: HttpRequest) -> list[int]:
    raw = request.POST.get("queue", "")
    parsed = (parse_optional_id(part) for part in raw.split(","))
    return [image_id for image_id in parsed if image_id is not None]


@require_POST
@login_required
def prediction_promote(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    """ "Save and close": into the training data with its labels; then the next selected one."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    try:
        promotion = promote_prediction(project=project, image_id=image_id, by=request.user)
    except NotFound:
        raise
    except LoupeError as err:
        messages.error(request, err.message)
        return redirect(_review_url(project.pk, image_id, _queue(request)))
    if promotion.already_done:
        done = "This image was already saved to the training data."
    else:
        done = "Saved to the training data."
    return _go_on_reviewing(request, project, image_id, done)


def _go_on_reviewing(
    request: HttpRequest, project: Project, image_id: int, done: str
) -> HttpResponse:
    """After a decision in review: the queue's next open prediction, or, when none is left,
    the Predictions tab with the queue's summary ("12 added to training, 3 dismissed.")."""
    queue = _queue(request)
    next_id = next_in_review(project=project, queue=queue, after=image_id) if queue else None
    if next_id is not None:
        messages.success(request, done)
        return redirect(_review_url(project.pk, next_id, queue))
    if queue:
        summary = review_summary(project=project, queue=queue)
        messages.success(request, f"Review done: {summary.describe()}")
    else:
        messages.success(request, done)
    return redirect("predictions:prediction-list", project.pk)


# --- Suggested tags ------------------------------------------------------------------------


@require_POST
@login_required
def suggestions_run(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    try:
        iteration = request_suggestions(project=project, by=request.user)
    except LoupeError as err:
        messages.error(request, err.message)
    else:
        messages.success(
            request,
            f"{iteration} is suggesting tags for the untagged images; the Images tab shows "
            "how far it has got, and each suggestion as it is made.",
        )
    return redirect("predictions:prediction-list", project.pk)


@require_POST
@login_required
def suggestion_accept(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    """One key in the tagging view: take the suggested tags for this image."""
    project = access_project(request.user, project_id)
    image = access_image(request.user, project, image_id)
    version = _optional_int(request.POST.get("version"))
    try:
        accept_suggestion(image=image, by=request.user, version=version)
    except LoupeError as err:
        messages.error(request, err.message)
    url = reverse("labeling:image-tag", args=[project.pk, image.pk])
    query = request.POST.get("return_query", "")
    return redirect(f"{url}?{query}" if query else url)


@require_GET
@login_required
def suggestions_status(request: HttpRequest, project_id: int) -> HttpResponse:
    """The gallery's suggestion progress line, polled by htmx while a run is going."""
    project = access_project(request.user, project_id)
    panel = suggestion_panel(request, project)
    if panel is None:
        return HttpResponse("")
    response = TemplateResponse(
        request, "predictions/_suggestion_panel.html#suggestion-progress", {"panel": panel}
    )
    if request.GET.get("was") == "running" and not panel["progress"].is_running:
        # The run just ended: the gallery's filter bar recounts "Has a suggestion".
        trigger_client_event(response, "gallery-changed")
    return response


@require_POST
@login_required
def suggestions_accept(request: HttpRequest, project_id: int) -> HttpResponse:
    """Accept every waiting suggestion at or above a confidence (the gallery; reviewers and up)."""
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    try:
        min_confidence = float(request.POST.get("min_confidence", ""))
    except ValueError:
        messages.error(request, "The confidence is a number from 0 to 1.")
    else:
        try:
            report = accept_suggestions_above(
                project=project, min_confidence=min_confidence, by=request.user
            )
        except LoupeError as err:
            messages.error(request, err.message)
        else:
            messages.success(request, report.describe())
    url = reverse("labeling:project-detail", args=[project.pk])
    query = request.POST.get("return_query", "")
    return redirect(f"{url}?{query}" if query else url)
