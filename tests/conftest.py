"""Shared fixtures: a private MEDIA_ROOT, in-memory images, users in every role, API clients."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image as PILImage
from rest_framework.test import APIClient

from labeling.models import Role
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytest_plugins = ["tests.worker"]  # the `celery_worker_redis` fixture (a real worker on Redis)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Their session-wide Playwright keeps an event loop running in the main thread, and after that
    `async_to_sync` (Channels' group_send, websocket tests) refuses to run in that thread.
    """
    items.sort(key=lambda item: "tests/browser/" in str(item.path))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    # The SQLite test database is a file (WAL, busy timeout), not ":memory:": a worker process
    # started by a test (tests/training: SIGKILLed mid-training) must open the same database,
    # and threads of an in-process worker then wait on locks instead of failing on them. The
    # file is named db.sqlite3 in its own directory so LOUPE_DATA_DIR=<that directory> opens it.
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        path = tmp_path_factory.mktemp("testdb") / "db.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(path)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    # PBKDF2's 1M rounds cost ~1.5 s per user on a busy 2-core host; tests need no strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Plain storage in tests: the manifest storage needs collectstatic to have run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test has its own MEDIA_ROOT, and iteration ids repeat across tests (SQLite reuses a
    rolled-back id): a model cached by an earlier test under the same (iteration id, artifact
    name) would answer for this test's model (predictions.model_cache)."""
    from predictions.model_cache import model_cache

    model_cache().clear()
    yield
    model_cache().clear()


@pytest.fixture(autouse=True)
def _queue_backoff():
    """A broker failure in one test must not make project.queue skip sends in the next."""
    from project.queue import reset_backoff

    reset_backoff()
    yield
    reset_backoff()


def make_image(
    width: int = 8,
    height: int = 8,
    color: tuple[int, int, int] = (200, 30, 30),
    fmt: str = "PNG",
    **save_kwargs: object,
) -> bytes:
    """An image file of the given size and format, made in memory."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    return make_image


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def users(project) -> dict[str, object]:
    """One user per relation to `project`: admin, reviewer, annotator, non-member."""
    result = {"non_member": UserFactory(username="outsider")}
    for role in (Role.ADMIN, Role.REVIEWER, Role.ANNOTATOR):
        result[str(role)] = MembershipFactory(
            project=project, role=role, user__username=f"{role}-user"
        ).user
    return result


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for(client) -> Callable[[object], object]:
    """`client_for(user)`: the Django test client logged in as `user` (None: anonymous)."""

    def login(user: object | None):
        client.logout()
        if user is not None:
            client.force_login(user)
        return client

    return login
