"""pytest plugin loaded with `-p` (pyproject addopts), before pytest-django reads the settings.

Tests that need Redis (Celery broker, result backend, Channels layer) use REDIS_URL from the
environment; without one they use database 15 of the Redis on 127.0.0.1:6379, which runs on
development machines and in CI. It must be set here, not in a conftest: pytest-django loads
the settings before any conftest is imported, and the settings read REDIS_URL once.
"""

import os

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"

os.environ.setdefault("REDIS_URL", DEFAULT_TEST_REDIS_URL)
