"""/healthz for deployment checks: is the database, the broker and a worker for every queue up?

200 with the details when all is well; 503 with `problems` naming each part that is down. No login:
the answer holds no data, only worker names and queue names. It takes about WORKER_TIMEOUT_S
(the broadcast to workers waits that long for replies, since it cannot know how many will answer).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from kombu.exceptions import OperationalError

from project.celery import app as celery_app

# Every queue some task is routed to: a queue nobody consumes means work that never runs.
REQUIRED_QUEUES = ("celery", "thumbnails", "predict", "train")
BROKER_TIMEOUT_S = 2.0
WORKER_TIMEOUT_S = 1.0

# Errors that mean "cannot reach it", as opposed to a bug in this view.
_BROKER_ERRORS = (OperationalError, redis.RedisError, OSError)


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as err:
        return f"database: {err}"
    return None


def _check_broker() -> str | None:
    try:
        with celery_app.connection_for_write() as conn:
            # One try, no back-off sleep: a health check must answer fast when the broker is down.
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
    except _BROKER_ERRORS as err:
        return f"broker: {err}"
    return None


def _check_workers() -> tuple[list[str], dict[str, list[str]]]:
    """(problems, {worker name: queues it consumes})."""
    try:
        replies = celery_app.control.inspect(timeout=WORKER_TIMEOUT_S).active_queues() or {}
    except _BROKER_ERRORS as err:
        return [f"worker: {err}"], {}
    workers = {name: sorted(q["name"] for q in queues) for name, queues in replies.items()}
    if not workers:
        return [f"worker: no worker answered within {WORKER_TIMEOUT_S:g} s"], {}
    consumed = {queue for queues in workers.values() for queue in queues}
    missing = [q for q in REQUIRED_QUEUES if q not in consumed]
    problems = [f"worker: no worker consumes the {q!r} queue" for q in missing]
    return problems, workers


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    started = time.perf_counter()
    checks: dict[str, str] = {}
    problems: list[str] = []
    workers: dict[str, list[str]] = {}
    for part, problem in (("database", _check_database()), ("broker", _check_broker())):
        checks[part] = "down" if problem else "ok"
        problems += [problem] if problem else []
    if checks["broker"] == "ok":
        worker_problems, workers = _check_workers()
        checks["worker"] = "down" if worker_problems else "ok"
        problems += worker_problems
    else:
        checks["worker"] = "unknown"  # workers are reached through the broker
    body: dict[str, Any] = {
        "status": "ok" if not problems else "unavailable",
        "checks": checks,
        "problems": problems,
        "workers": workers,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if not problems else 503)
