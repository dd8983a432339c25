"""Where the model looked (HTML): the Grad-CAM partial and its overlay PNG, and an iteration's
context reliance page. Thin: look up through the access funnel, call one service, render.

The partial's URL names what it explains by query (`?iteration=<id>&image=<id>` for a project
image, `&upload=<sha256>` for a quick-test upload), so the same endpoint serves the
mispredicted walk, a stored prediction's review and the quick test. Any member may ask for an
image they may open (stored predictions: reviewers and up, as everywhere).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from labeling.access import access_image, access_project
from labeling.models import Project
from project.errors import LoupeError, error_response
from project.streaming import stream_file
from training.services import context_reliance, saliency


def explained_for(request: HttpRequest, project: Project, params: Any) -> saliency.Explained:
    """The Explained state named by `params` (iteration + image or upload); LoupeError if the
    user may not see it."""
    iteration = saliency.explainable_iteration(project, params.get("iteration"))
    if params.get("upload"):
        key = saliency.upload_key(iteration, params.get("upload"))
    else:
        key = saliency.image_key(request.user, project, params.get("image"))
    return saliency.saliency_state(iteration, key)


def partial_context(project: Project, state: saliency.Explained, **extra: Any) -> dict[str, Any]:
    key = state.key
    query = f"iteration={state.iteration.pk}&" + (
        f"upload={key[1:]}" if key.startswith("u") else f"image={key[1:]}"
    )
    return {
        "project": project,
        "wl": state,
        "wl_url": reverse("training:where-looked", args=[project.pk]) + "?" + query,
        **extra,
    }


@require_http_methods(["GET", "POST"])
@login_required
def where_looked(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the partial (htmx polls it while the worker computes); POST: ask for the map."""
    project = access_project(request.user, project_id)
    # What to explain is in the query (the form posts to the same URL); the target may be
    # in either.
    params = request.GET
    target = request.POST.get("target") or request.GET.get("target", "")
    try:
        state = explained_for(request, project, params)
        if request.method == "POST":
            state = saliency.request_saliency(state.iteration, state.key)
    except LoupeError as err:
        return error_response(request, err)
    context = partial_context(project, state, wl_target=target, wl_auto=bool(request.htmx))
    if request.method == "POST" and not request.htmx:  # POST/redirect/GET without JavaScript
        return redirect(context["wl_url"])
    name = "components/_where_looked.html" if request.htmx else "training/where_looked.html"
    if not request.htmx and state.key.startswith("i"):
        context["image"] = access_image(request.user, project, state.key[1:])
    return TemplateResponse(request, name, context)


@require_GET
@login_required
def where_looked_overlay(request: HttpRequest, project_id: int) -> HttpResponse:
    """The overlay PNG (same query as the partial), streamed from storage to those who may
    see the image."""
    project = access_project(request.user, project_id)
    try:
        state = explained_for(request, project, request.GET)
        handle = saliency.open_overlay(state.iteration, state.key)
    except LoupeError as err:
        return error_response(request, err)
    response = stream_file(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_http_methods(["GET", "POST"])
@login_required
def iteration_context_reliance(
    request: HttpRequest, project_id: int, iteration_id: int
) -> HttpResponse:
    """The per-tag context reliance of an iteration: GET shows it (polled while computing);
    POST asks a worker to measure it."""
    project = access_project(request.user, project_id)
    try:
        iteration = context_reliance.reliance_iteration(project, iteration_id)
    except LoupeError as err:
        return error_response(request, err)
    if request.method == "POST":
        context_reliance.request_context_reliance(iteration)
        if not request.htmx:
            return redirect("training:context-reliance", project.pk, iteration.pk)
    state = context_reliance.context_state(iteration)
    context = {
        "project": project,
        "iteration": iteration,
        "state": state,
        "is_active": state.get("status") in (saliency.QUEUED, saliency.RUNNING),
        "per_tag": context_reliance.PER_TAG,
    }
    name = "training/context_reliance.html"
    if request.htmx:
        name += "#reliance-report"
    return TemplateResponse(request, name, context)
