"""pytest plugin: `celery_worker_redis`, a REAL Celery worker against a REAL Redis broker.

Use it in a test that needs tasks to run the way production runs them (never eager mode):

    pytestmark = pytest.mark.worker          # optional: the fixture adds the mark itself

    def test_thumbnails_are_made(celery_worker_redis, ...):
        ...  # code that enqueues with delay()/delay_on_commit(); then poll the database

What it gives you:
- a worker thread in this process (solo pool, concurrency 1) consuming the queues
  `celery`, `thumbnails`, `predict` and `train` of the Loupe Celery app (project.celery.app);
- broker and result backend = REDIS_URL, or redis://127.0.0.1:6379/15 when unset (a
  redis-server runs on the development machine and in CI); a missing Redis fails the test
  with a clear message, it is never skipped;
- every Redis key prefixed with a per-test random string, so parallel test runs on one Redis
  never steal each other's tasks;
- `transactional_db`: rows the test commits are visible to the worker thread, and
  `transaction.on_commit` callbacks (delay_on_commit) really fire.

The fixture yields the WorkController; `wait_for(predicate, timeout_s=...)` below polls until
something the worker does becomes true.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu import pools as kombu_pools

WORKER_QUEUES = ("celery", "thumbnails", "predict", "train")
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "celery_worker_redis" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.worker)


def _reset_connections(app: Any) -> None:
    """Drop pooled broker connections so the next publish uses the current broker_url."""
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    # The control mailbox caches its own producer pool, closed with the worker: without this a
    # later broadcast (e.g. /healthz's ping) fails with "Acquire on closed pool".
    app.control.mailbox.__dict__.pop("producer_pool", None)
    # kombu also keeps process-wide producer/connection pools keyed by connection: a pool the
    # stopped worker closed would otherwise be handed out again ("Acquire on closed pool").
    kombu_pools.reset()


@pytest.fixture
def celery_worker_redis(transactional_db: None) -> Iterator[Any]:
    import redis
    from celery.contrib.testing.worker import start_worker

    from project.celery import app

    url = os.environ.get("REDIS_URL") or DEFAULT_TEST_REDIS
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as err:
        pytest.fail(
            f"The worker tests need a running Redis at {url} ({err}). Start "
            "redis-server or set REDIS_URL."
        )
    saved = {
        key: app.conf[key]
        for key in (
            "broker_url",
            "result_backend",
            "broker_transport_options",
            "result_backend_transport_options",
        )
    }
    prefix = f"loupe-test-{uuid.uuid4().hex[:12]}:"
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options={
            **(saved["broker_transport_options"] or {}),
            "global_keyprefix": prefix,
        },
        result_backend_transport_options={"global_keyprefix": prefix},
    )
    _reset_connections(app)
    try:
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            queues=list(WORKER_QUEUES),
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ) as worker:
            yield worker
    finally:
        app.conf.update(saved)
        _reset_connections(app)


def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "the worker",
) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout_s:g} s waiting for {what}.")
        time.sleep(interval_s)
