"""Fixtures of the robustness tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def broker_down():
    """Point the Celery app at a port where nothing listens, as when Redis is down."""
    from project.celery import app
    from project.queue import reset_backoff
    from tests.worker import _reset_connections

    saved = {key: app.conf[key] for key in ("broker_url", "result_backend")}
    app.conf.update(broker_url="redis://127.0.0.1:1/0", result_backend="redis://127.0.0.1:1/0")
    _reset_connections(app)
    reset_backoff()
    yield
    app.conf.update(saved)
    _reset_connections(app)
    reset_backoff()


@pytest.fixture
def private_broker():
    """The real test Redis, with keys under a prefix of this test's own (no worker consumes)."""
    import os
    import uuid

    from project.celery import app
    from project.queue import reset_backoff
    from tests.worker import DEFAULT_TEST_REDIS, _reset_connections

    url = os.environ.get("REDIS_URL") or DEFAULT_TEST_REDIS
    saved = {key: app.conf[key] for key in ("broker_url", "broker_transport_options")}
    prefix = f"loupe-test-{uuid.uuid4().hex[:12]}:"
    app.conf.update(
        broker_url=url,
        broker_transport_options={
            **(saved["broker_transport_options"] or {}),
            "global_keyprefix": prefix,
        },
    )
    _reset_connections(app)
    reset_backoff()
    yield prefix
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    app.conf.update(saved)
    _reset_connections(app)
    reset_backoff()
