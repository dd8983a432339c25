"""/healthz: is the database, the broker and at least one worker reachable? For deployment checks."""

from __future__ import annotations

import time

from django.db import connection
from django.http import HttpRequest, JsonResponse

from project.celery import app as celery_app


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as err:  # any driver error means "down"; the message is reported
        return f"database: {err}"
    return None


def _check_broker() -> str | None:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as err:
        return f"broker: {err}"
    return None


def _check_workers() -> tuple[str | None, list[str]]:
    try:
        replies = celery_app.control.ping(timeout=1.0) or []
    except Exception as err:
        return f"worker: {err}", []
    names = sorted(name for reply in replies for name in reply)
    return (None if names else "worker: no worker answered within 1 s"), names


def healthz(request: HttpRequest) -> JsonResponse:
    started = time.perf_counter()
    problems = [p for p in (_check_database(), _check_broker()) if p]
    worker_problem, workers = _check_workers() if not problems else ("worker: not checked", [])
    if worker_problem:
        problems.append(worker_problem)
    body = {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "workers": workers,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if not problems else 503)
