"""Training pages: Train (start + live progress), iterations, performance, compare.

Views parse, call one service and render; every rule (roles included) is in training.services.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from labeling.access import access_project, has_role
from labeling.models import Project, Role
from project.errors import LoupeError, ValidationFailed
from training.forms import CompareForm, NameForm, ThresholdForm, TrainForm
from training.models import Iteration
from training.services import publishing
from training.services.detection_performance import (
    DEFAULT_OVERLAP,
    OVERLAP_MAX,
    OVERLAP_MIN,
    detection_figures_at,
    detection_page_data,
    load_detection_table,
)
from training.services.figures import compare, headline
from training.services.iterations import cancel_iteration, start_iteration
from training.services.mispredicted import parse_fraction
from training.services.performance import figures_at, load_scores, page_data
from training.services.pipelines import pipeline_for
from training.services.progress import clock, iteration_state, timing_summary


def _iteration(
    request: HttpRequest, project_id: int, iteration_id: int, min_role: Role = Role.ANNOTATOR
) -> tuple[Project, Iteration]:
    project = access_project(request.user, project_id, min_role=min_role)
    return project, get_object_or_404(project.iterations, pk=iteration_id)


def _progress_context(iteration: Iteration | None) -> dict[str, object]:
    """The progress card: the running iteration, else the last one, so an ended run says so."""
    if iteration is None:
        return {"latest": None}
    state = iteration_state(iteration)
    return {
        "latest": iteration,
        "state": state,
        "timing": timing_summary(state),
        "duration": clock(state["elapsed_s"]),
        "ended": _ago(iteration.finished),
        "headline": headline(iteration),
    }


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


def _train_context(request: HttpRequest, project: Project, form: TrainForm) -> dict[str, object]:
    recent = list(project.iterations.all()[:5])
    active = next((it for it in recent if it.is_active), None)
    is_admin = has_role(request.user, project, Role.ADMIN)
    pipeline = pipeline_for(project)
    return {
        **_progress_context(active or (recent[0] if recent else None)),
        "project": project,
        "form": form,
        "active": active,
        "recent": recent,
        "is_admin": is_admin,
        "choices": pipeline.choices(),
        "estimate": pipeline.estimate(project, pipeline.quick_budget_s()) if is_admin else None,
        # Members below admin are told why there is no Train button, and whom to ask.
        "role": project.current_role,  # type: ignore[attr-defined]
        "admin_names": []
        if is_admin
        else list(
            project.memberships.filter(role=Role.ADMIN)
            .order_by("user__username")
            .values_list("user__username", flat=True)
        ),
    }


@require_http_methods(["GET", "POST"])
@login_required
def train(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the Train button and the running iteration's progress. POST: start a training."""
    project = access_project(request.user, project_id)
    form = TrainForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            start_iteration(project=project, by=request.user, **form.service_kwargs())
        except LoupeError as err:
            if err.http_status in (403, 404):
                raise
            form.add_error(None, err.message)
        else:
            return redirect("training:train", project.id)
    return TemplateResponse(
        request,
        "training/train.html",
        _train_context(request, project, form),
        status=422 if form.errors else 200,
    )


@require_GET
@login_required
def iteration_status(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    """The progress partial, for a page whose socket reported a finished iteration."""
    project, iteration = _iteration(request, project_id, iteration_id)
    return TemplateResponse(
        request,
        "training/train.html#progress",
        {"project": project, **_progress_context(iteration)},
    )


def _list_context(request: HttpRequest, project: Project) -> dict[str, object]:
    iterations = list(project.iterations.all())
    for it in iterations:
        it.headline = headline(it)  # type: ignore[attr-defined]
    return {
        "project": project,
        "iterations": iterations,
        "is_admin": has_role(request.user, project, Role.ADMIN),
        "completed": [it for it in iterations if it.is_completed],
    }


@require_GET
@login_required
def iteration_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    return TemplateResponse(request, "training/iterations.html", _list_context(request, project))


def _action(
    request: HttpRequest,
    project_id: int,
    iteration_id: int,
    call: Callable[[Iteration], object],
    done: str,
) -> HttpResponse:
    """Run one admin action on an iteration; answer the list (htmx) or redirect to it."""
    project, iteration = _iteration(request, project_id, iteration_id)
    error = ""
    try:
        call(iteration)
    except LoupeError as err:
        if err.http_status in (403, 404):
            raise
        error = err.message
    if request.POST.get("next") == "performance":  # the action came from the iteration's page
        if error:
            messages.error(request, error)
        else:
            messages.success(request, done)
        return redirect("training:iteration-performance", project.id, iteration.id)
    if request.POST.get("next") == "train":  # the Train page's progress card
        if error:
            messages.error(request, error)
        else:
            messages.success(request, done)
        url = reverse("training:train", args=[project.id])
        # The whole page changes (the Train form comes back), so htmx loads it afresh.
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    if request.htmx:
        context = {
            **_list_context(request, project),
            "error": error,
            "notice": "" if error else done,
        }
        return TemplateResponse(
            request,
            "training/iterations.html#iteration-list",
            context,
            status=422 if error else 200,
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, done)
    return redirect("training:iteration-list", project.id)


def _name(request: HttpRequest) -> str:
    form = NameForm(request.POST)
    if not form.is_valid():
        raise ValidationFailed("Give a name of 1 to 100 characters.")
    return form.cleaned_data["name"]


@require_POST
@login_required
def iteration_publish(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    return _action(
        request,
        project_id,
        iteration_id,
        lambda it: publishing.publish_iteration(iteration=it, name=_name(request), by=request.user),
        "Iteration published.",
    )


@require_POST
@login_required
def iteration_unpublish(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    return _action(
        request,
        project_id,
        iteration_id,
        lambda it: publishing.unpublish_iteration(iteration=it, by=request.user),
        "Iteration unpublished.",
    )


@require_POST
@login_required
def iteration_make_default(
    request: HttpRequest, project_id: int, iteration_id: int
) -> HttpResponse:
    return _action(
        request,
        project_id,
        iteration_id,
        lambda it: publishing.make_default_iteration(iteration=it, by=request.user),
        "Default iteration changed.",
    )


@require_POST
@login_required
def iteration_rename(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    return _action(
        request,
        project_id,
        iteration_id,
        lambda it: publishing.rename_iteration(iteration=it, name=_name(request), by=request.user),
        "Iteration renamed.",
    )


@require_POST
@login_required
def iteration_delete(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    return _action(
        request,
        project_id,
        iteration_id,
        lambda it: publishing.delete_iteration(iteration=it, by=request.user),
        "Iteration deleted.",
    )


@require_POST
@login_required
def iteration_cancel(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    return _action(
        request,
        project_id,
        iteration_id,
        lambda it: cancel_iteration(iteration=it, by=request.user),
        "Training cancelled.",
    )


@require_POST
@login_required
def iteration_threshold(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    """Save the slider's threshold as the iteration's suggested threshold (204, or a redirect)."""
    _, iteration = _iteration(request, project_id, iteration_id)
    form = ThresholdForm(request.POST)
    if not form.is_valid():
        raise ValidationFailed("The threshold must be a number between 0 and 1.")
    publishing.set_suggested_threshold(
        iteration=iteration, threshold=form.cleaned_data["threshold"], by=request.user
    )
    if request.htmx or request.headers.get("X-Requested-With") == "fetch":
        return HttpResponse(status=204)
    return redirect("training:iteration-performance", project_id, iteration_id)


@require_GET
@login_required
def performance(request: HttpRequest, project_id: int) -> HttpResponse:
    """The Performance tab: the chosen (?iteration=), default or latest completed iteration."""
    project = access_project(request.user, project_id)
    chosen = request.GET.get("iteration", "")
    if chosen.isdigit():
        iteration = get_object_or_404(project.iterations, pk=int(chosen))
    else:
        iteration = publishing.current_iteration(project)
    if iteration is None:
        return redirect("training:iteration-list", project.id)
    return redirect("training:iteration-performance", project.id, iteration.id)


def _page_context(
    request: HttpRequest, project: Project, iteration: Iteration
) -> dict[str, object]:
    """What every performance page shows around its figures: the switcher and admin actions."""
    return {
        "project": project,
        "iteration": iteration,
        "iterations": list(project.iterations.only("id", "name", "number", "status", "is_default")),
        "is_admin": has_role(request.user, project, Role.ADMIN),
    }


@require_GET
@login_required
def iteration_performance(request: HttpRequest, project_id: int, iteration_id: int) -> HttpResponse:
    project, iteration = _iteration(request, project_id, iteration_id)
    context = _page_context(request, project, iteration)
    if project.is_detection:
        return _detection_performance(request, project, iteration, context)
    if iteration.is_completed:
        table = load_scores(iteration)
        can_save = has_role(request.user, project, Role.ADMIN)
        save_url = reverse("training:iteration-threshold", args=[project.id, iteration.id])
        # ?threshold= (the editor's way back) starts the slider where the user left it.
        threshold = parse_fraction(
            request.GET.get("threshold"), default=iteration.suggested_threshold
        )
        context.update(
            figures=figures_at(iteration, table, threshold),
            data=page_data(
                iteration, table, can_save=can_save, save_url=save_url, threshold=threshold
            ),
            can_save=can_save,
        )
    return TemplateResponse(request, "training/performance.html", context)


def _detection_performance(
    request: HttpRequest, project: Project, iteration: Iteration, context: dict[str, object]
) -> HttpResponse:
    if iteration.is_completed:
        table = load_detection_table(iteration)
        can_save = has_role(request.user, project, Role.ADMIN)
        save_url = reverse("training:iteration-threshold", args=[project.id, iteration.id])
        threshold = parse_fraction(
            request.GET.get("threshold"), default=iteration.suggested_threshold
        )
        overlap = parse_fraction(
            request.GET.get("overlap"), default=DEFAULT_OVERLAP, low=OVERLAP_MIN, high=OVERLAP_MAX
        )
        context.update(
            figures=detection_figures_at(iteration, table, threshold, overlap),
            data=detection_page_data(
                iteration,
                table,
                can_save=can_save,
                save_url=save_url,
                threshold=threshold,
                overlap=overlap,
            ),
            can_save=can_save,
        )
    return TemplateResponse(request, "training/performance_detection.html", context)


@require_GET
@login_required
def iteration_compare(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    form = CompareForm(request.GET)
    if not form.is_valid():
        raise ValidationFailed("Choose two iterations to compare.")
    first = get_object_or_404(project.iterations.completed(), pk=form.cleaned_data["a"])
    second = get_object_or_404(project.iterations.completed(), pk=form.cleaned_data["b"])
    return TemplateResponse(
        request,
        "training/compare.html",
        {"project": project, "first": first, "second": second, **compare(first, second)},
    )
