"""The Health tab (dataset health check) and the "Possible mislabels" review queue.

Views parse, call one service and render; the rules are in training.services.health and
training.services.label_errors.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST

from labeling.access import access_project, has_role
from labeling.models import Role
from project.errors import LoupeError, NotFound
from project.ids import parse_optional_id
from training.models import HealthReport
from training.services.figures import headline
from training.services.health import current_report, report_lines, request_health_check, summary
from training.services.label_errors import (
    REVIEW_ROLE,
    accept_suggestion,
    keep_label,
    review_queue,
    source_iteration,
)

QUEUE_SHOWN = 20


@require_GET
@login_required
def health(request: HttpRequest, project_id: int) -> HttpResponse:
    """The health check's lines; queues a fresh check when the data changed since the last."""
    project = access_project(request.user, project_id)
    report = current_report(project)
    can_review = has_role(request.user, project, REVIEW_ROLE)
    context = {
        "project": project,
        "report": report,
        "is_active": report.status in (HealthReport.Status.QUEUED, HealthReport.Status.RUNNING),
        "lines": report_lines(project, report),
        "summary": summary(report),
        "can_review": can_review,
        "iteration": source_iteration(project),
        # Computed on demand and cached per iteration (training.services.label_errors).
        "mislabel_count": len(review_queue(project, request.user)) if can_review else None,
    }
    name = "training/health.html"
    if request.htmx and request.htmx.target == "health-report":
        name += "#health-report"
    return TemplateResponse(request, name, context)


@require_POST
@login_required
def health_refresh(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    request_health_check(project)
    return redirect("training:health", project.id)


@require_GET
@login_required
def mislabel_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=REVIEW_ROLE)
    queue = review_queue(project, request.user)
    iteration = source_iteration(project)
    shown = queue[:QUEUE_SHOWN]
    images = {i.pk: i for i in project.images.filter(pk__in=[s.image_id for s in shown])}
    rows = [{"s": s, "image": images[s.image_id]} for s in shown if s.image_id in images]
    return TemplateResponse(
        request,
        "training/mislabels.html",
        {
            "project": project,
            "iteration": iteration,
            # bench/label_errors.py: with a 98% probe 9 in 10 candidates are label errors; with
            # a 57% one, under 3 in 10. The page says how good the model is.
            "headline": headline(iteration) if iteration else None,
            "current": rows[0] if rows else None,
            "upcoming": rows[1:],
            "total": len(queue),
        },
    )


def _act(request: HttpRequest, project_id: int, accept: bool) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.REVIEWER)
    image_id = parse_optional_id(request.POST.get("image_id"))
    label_key = request.POST.get("label_key", "")
    try:
        if image_id is None:
            raise NotFound("That suggestion is no longer in the queue.")
        if accept:
            accept_suggestion(
                project=project, image_id=image_id, label_key=label_key, by=request.user
            )
            messages.success(request, "Suggestion accepted: the image is relabeled.")
        else:
            keep_label(project=project, image_id=image_id, label_key=label_key, by=request.user)
            messages.success(request, "Label kept: it will not be flagged again.")
    except LoupeError as err:  # gone from the queue, an edit conflict: say so, show the next
        if err.http_status == 403:
            raise
        messages.error(request, err.message)
    return redirect("training:mislabel-list", project.id)


@require_POST
@login_required
def mislabel_accept(request: HttpRequest, project_id: int) -> HttpResponse:
    return _act(request, project_id, accept=True)


@require_POST
@login_required
def mislabel_keep(request: HttpRequest, project_id: int) -> HttpResponse:
    return _act(request, project_id, accept=False)
