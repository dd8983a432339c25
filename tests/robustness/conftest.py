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
