"""Fixtures of the platform tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.worker import _reset_connections

BROKER_KEYS = ("broker_url", "result_backend", "broker_transport_options")


def _reset_broker_state(app: Any) -> None:
    """Forget every pooled connection and producer, so the app uses its current broker_url.

    Besides the app's pools, the control mailbox caches a producer pool of its own, which a
    worker closes when it stops: broadcasts after that fail with "Acquire on closed pool".
    """
    _reset_connections(app)
    app.control.mailbox.__dict__.pop("producer_pool", None)


@pytest.fixture
def broker(request) -> Iterator[str]:
    """Point the Loupe Celery app at `url` (parametrize indirectly; default REDIS_URL) under a
    fresh key prefix, so no worker of another test run shares its queues or broadcasts."""
    import os

    from project.celery import app

    url = getattr(request, "param", None) or os.environ["REDIS_URL"]
    saved = {key: app.conf[key] for key in BROKER_KEYS}
    prefix = f"loupe-test-{uuid.uuid4().hex[:12]}:"
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options={
            **(saved["broker_transport_options"] or {}),
            "global_keyprefix": prefix,
        },
    )
    _reset_broker_state(app)
    try:
        yield url
    finally:
        app.conf.update(saved)
        _reset_broker_state(app)
