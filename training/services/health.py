"""The dataset health check: read the project's stored data, run training.ml.health, keep it.

Invariant: a project has one HealthReport; a check is queued (by task name) only when none is
queued or running, and the report records the data fingerprint it was computed from. When the
project's current fingerprint differs (images uploaded, deleted or relabeled; a training
finished), a refresh is queued by whichever comes first: a page or API call that reads the
report, or `sweep_health` (beat, every minute) once no image arrived for QUIET_S (an upload in
progress is not checked twenty times). So the report follows uploads and trainings without the
upload or training code calling this app. If the worker dies,
the report stays "queued"/"running" only until STALE_AFTER_S: the next read marks it failed
with a reason and queues it again, so no check hangs forever.

Data: sizes and labels from the database (a few queries, values only); embeddings from the
feature cache keyed by content hash and the project's backbone (training.ml.features), the
worker embedding the images it lacks; the latest completed iteration's folds for leakage.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np
from django.db.models import Count, Max, Sum
from django.urls import reverse
from django.utils import timezone

from labeling.models import ImageTag, Project, Region
from project.queue import broker_is_down
from training.ml.health import NOT_IN_SPLIT, HealthData, TagInfo, check_health
from training.models import HealthReport, IterationImage, IterationScore
from training.services.embeddings import cached_embeddings
from training.services.project_jobs import claim_run, request_run

logger = logging.getLogger(__name__)

TASK = "training.check_health"
TIME_LIMIT_S = 1800  # embedding 20,000 new images on a CPU worker fits; the rules take seconds
STALE_AFTER_S = TIME_LIMIT_S + 300
QUIET_S = 60
# A report made on first read holds nothing and runs nothing (the model's default, "queued", is
# for a report whose task was sent): the read then finds it stale and queues the first check.
_IDLE = {"status": HealthReport.Status.DONE}
QUERY_KEY = "health"
# A side for images the latest iteration trained on under a single hold-out split.
_TRAINED = -3


def data_fingerprint(project: Project) -> str:
    """What the report depends on, in two aggregate queries: any upload, deletion or label edit
    (every label edit bumps an image's version) or a newly completed iteration changes it."""
    images = project.images.training().aggregate(n=Count("pk"), top=Max("pk"), v=Sum("version"))
    latest = project.iterations.completed().aggregate(top=Max("pk"))["top"]
    text = f"{images['n']}:{images['top']}:{images['v']}:{latest}:{project.kind}"
    return hashlib.sha256(text.encode()).hexdigest()


def current_report(project: Project, *, refresh: bool = True) -> HealthReport:
    """The project's report, queueing a check when it is missing, stale or lost (see module)."""
    report, _ = HealthReport.objects.get_or_create(project=project, defaults=_IDLE)
    now = timezone.now()
    is_active = report.status in (HealthReport.Status.QUEUED, HealthReport.Status.RUNNING)
    if is_active and report.requested and now - report.requested > timedelta(seconds=STALE_AFTER_S):
        HealthReport.objects.filter(pk=report.pk, status=report.status).update(
            status=HealthReport.Status.FAILED,
            failure_message=(
                f"The check did not finish within {STALE_AFTER_S // 60} minutes (its worker "
                "stopped, or the training queue was busy); it is queued again."
            ),
            finished=now,
        )
        report.refresh_from_db()
        is_active = False
    if refresh and not is_active and report.fingerprint != data_fingerprint(project):
        report = request_health_check(project)
    return report


def sweep_health() -> int:
    """Queue a check for each project with training images whose report is missing or stale and
    whose uploads have been quiet for QUIET_S; mark lost checks failed. Returns how many were
    queued. Cost per project: three small aggregate queries."""
    if broker_is_down():  # the sends would only fail; the next sweep retries
        return 0
    quiet_since = timezone.now() - timedelta(seconds=QUIET_S)
    projects = Project.objects.filter(images__is_training=True).annotate(
        newest=Max("images__created")
    )
    queued = 0
    for project in projects.filter(newest__lt=quiet_since):
        before = (
            HealthReport.objects.filter(project=project).values_list("requested", flat=True).first()
        )
        if current_report(project).requested != before:
            queued += 1
    return queued


def request_health_check(project: Project) -> HealthReport:
    """Queue a check unless one is queued or running; returns the report."""
    return request_run(
        HealthReport,
        project,
        task=TASK,
        lost_message="The check could not be queued (the task queue is down).",
        defaults=_IDLE,
    )


def run_health_check(project_id: int) -> None:
    """The worker's job: claim, compute, store. Ends done or failed, never running."""
    report = claim_run(HealthReport, project_id)
    if report is None:
        return
    project = Project.objects.get(pk=project_id)
    started = time.perf_counter()
    try:
        fingerprint = data_fingerprint(project)
        data = gather_health_data(project, embed_missing=True)
        results = [vars(r) | {"image_ids": list(r.image_ids)} for r in check_health(data)]
    except Exception:  # every job ends: a named failure, the details in the log only
        logger.exception("Health check of project %s failed", project_id)
        HealthReport.objects.filter(pk=report.pk).update(
            status=HealthReport.Status.FAILED,
            failure_message=(
                "The check failed; the details are in the server's log. Try again later."
            ),
            finished=timezone.now(),
        )
        return
    HealthReport.objects.filter(pk=report.pk).update(
        status=HealthReport.Status.DONE,
        fingerprint=fingerprint,
        results=results,
        failure_message="",
        image_count=len(data.image_ids),
        embedded_count=0 if data.embedded_rows is None else len(data.embedded_rows),
        duration_s=time.perf_counter() - started,
        finished=timezone.now(),
    )


def gather_health_data(project: Project, *, embed_missing: bool = False) -> HealthData:
    """The project's training images as training.ml.health's arrays (a handful of queries)."""
    rows = list(
        project.images.training().order_by("pk").values_list("pk", "width", "height", "sha256")
    )
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    row_of = {image_id: i for i, image_id in enumerate(ids.tolist())}
    tags = [TagInfo(t.pk, t.name, t.is_negative) for t in project.tags.all()]
    labels = ImageTag.objects.filter(image__project=project, image__is_training=True)
    label_pairs = [(row_of[i], t) for i, t in labels.values_list("image_id", "tag_id")]
    box_values = Region.objects.filter(image__project=project, image__is_training=True)
    box_list = list(box_values.values_list("image_id", "tag_id", "left", "top", "width", "height"))
    embeddings, embedded_rows = cached_embeddings(
        project, [r[3] for r in rows], embed_missing=embed_missing
    )
    side, iteration_name = _split_sides(project, row_of)
    return HealthData(
        kind=project.kind,
        tags=tags,
        image_ids=ids,
        widths=np.array([r[1] for r in rows], dtype=np.int64),
        heights=np.array([r[2] for r in rows], dtype=np.int64),
        label_rows=np.array([p[0] for p in label_pairs], dtype=np.int64),
        label_tags=np.array([p[1] for p in label_pairs], dtype=np.int64),
        box_rows=np.array([row_of[b[0]] for b in box_list], dtype=np.int64),
        box_tags=np.array([b[1] for b in box_list], dtype=np.int64),
        boxes=np.array([b[2:] for b in box_list], dtype=np.float64).reshape(-1, 4),
        embeddings=embeddings,
        embedded_rows=embedded_rows,
        side=side,
        iteration_name=iteration_name,
    )


def _split_sides(project: Project, row_of: dict[int, int]) -> tuple[np.ndarray | None, str]:
    """Each image's side of the latest completed iteration's split (see HealthData.side)."""
    iteration = project.iterations.completed().order_by("-number").first()
    if iteration is None:
        return None, ""
    side = np.full(len(row_of), NOT_IN_SPLIT, dtype=np.int64)
    folds = dict(
        IterationScore.objects.filter(iteration=iteration).values_list(
            "iteration_image__image_id", "fold"
        )
    )
    for image_id in IterationImage.objects.filter(iteration=iteration).values_list(
        "image_id", flat=True
    ):
        if image_id in row_of:
            side[row_of[image_id]] = folds.get(image_id, _TRAINED)
    return side, iteration.name


# --- What the pages show -----------------------------------------------------------------------


def report_lines(project: Project, report: HealthReport) -> list[dict[str, Any]]:
    """The report's results with a gallery link to the images each names."""
    gallery = reverse("labeling:project-detail", args=[project.pk])
    lines = []
    for result in report.results:
        count = len(result.get("image_ids", []))
        url = f"{gallery}?{urlencode({QUERY_KEY: result['key']})}" if count else ""
        lines.append({**result, "image_count": count, "gallery_url": url})
    return lines


def summary(report: HealthReport) -> dict[str, int]:
    """How many rules pass, warn and fail."""
    counts = {"pass": 0, "warn": 0, "fail": 0}
    for result in report.results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts


def rule_images(project: Project, key: str) -> tuple[str, list[int]] | None:
    """(title, image ids) of one rule of the stored report, or None if it has no such rule."""
    report = HealthReport.objects.filter(project=project).first()
    if report is None:
        return None
    for result in report.results:
        if result["key"] == key:
            return result["title"], [int(i) for i in result.get("image_ids", [])]
    return None
