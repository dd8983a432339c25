"""A worker SIGKILLed mid-training: the sweep re-queues the iteration once, then fails it with
worker_lost, and the project can train again. Real worker processes on a real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from tests.worker import DEFAULT_TEST_REDIS, _reset_connections, wait_for
from training.models import Iteration
from training.services.iterations import start_iteration, sweep_iterations

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LEASE_S = 2
REPO = Path(__file__).resolve().parents[2]
WORKER = """
import os
from project.celery import app
app.conf.update(broker_url=os.environ["REDIS_URL"], result_backend=os.environ["REDIS_URL"],
                broker_transport_options={"global_keyprefix": os.environ["KEYPREFIX"]},
                result_backend_transport_options={"global_keyprefix": os.environ["KEYPREFIX"]})
app.worker_main(["worker", "--pool=solo", "--queues=train", "--loglevel=INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"])
"""


def _database_env() -> dict[str, str]:
    """Point the worker process at this test's database (a SQLite file, or PostgreSQL in CI)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        path = Path(db["NAME"])
        assert path.name == "db.sqlite3", "tests/conftest.py keeps the test database in a file"
        return {"LOUPE_DATA_DIR": str(path.parent)}
    url = (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or 'localhost'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    return {"DATABASE_URL": url}


@pytest.fixture
def broker() -> Iterator[dict[str, str]]:
    """This process publishes to Redis under a private key prefix the worker processes share."""
    from project.celery import app

    url = os.environ.get("REDIS_URL") or DEFAULT_TEST_REDIS
    prefix = f"loupe-test-{uuid.uuid4().hex[:12]}:"
    saved = {
        key: app.conf[key]
        for key in (
            "broker_url",
            "result_backend",
            "broker_transport_options",
            "result_backend_transport_options",
        )
    }
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
    )
    _reset_connections(app)
    yield {"REDIS_URL": url, "KEYPREFIX": prefix}
    app.conf.update(saved)
    _reset_connections(app)


def start_worker(broker: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **broker,
        **_database_env(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "LOUPE_FEATURE_CACHE_DIR": str(settings.LOUPE_FEATURE_CACHE_DIR),
        "LOUPE_TRAIN_LEASE_S": str(LEASE_S),
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    return subprocess.Popen(
        [sys.executable, "-c", WORKER],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def kill_mid_training(
    worker: subprocess.Popen[bytes], iteration: Iteration, attempt: int, log: Path
) -> None:
    def embedding() -> bool:
        if worker.poll() is not None:
            pytest.fail(f"The worker exited early:\n{log.read_text()[-3000:]}")
        row = Iteration.objects.get(pk=iteration.pk)
        return row.attempts == attempt and row.progress_phase.startswith("embedding")

    wait_for(embedding, timeout_s=180, interval_s=0.05, what="the worker to start embedding")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def wait_for_lease_to_expire(iteration: Iteration) -> None:
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.TRAINING  # nobody noticed the death yet
    delay = (iteration.lease_expires - timezone.now()).total_seconds()
    time.sleep(max(delay, 0) + 0.5)


def test_killed_worker_is_requeued_once_then_fails_and_training_can_restart(
    broker, project, users, build_dataset, tmp_path
):
    settings.LOUPE_TRAIN_MAX_ATTEMPTS = 2
    build_dataset(project, {"red": 5, "green": 5})
    iteration = start_iteration(project=project, by=users["admin"])
    log = tmp_path / "worker.log"

    kill_mid_training(start_worker(broker, log), iteration, attempt=1, log=log)
    wait_for_lease_to_expire(iteration)
    assert sweep_iterations() == 1
    iteration.refresh_from_db()
    assert (iteration.status, iteration.attempts) == ("queued", 1)

    # The re-queued message reaches the next worker, which dies too: no third run.
    kill_mid_training(start_worker(broker, log), iteration, attempt=2, log=log)
    wait_for_lease_to_expire(iteration)
    assert sweep_iterations() == 1
    iteration.refresh_from_db()
    assert iteration.status == "failed" and iteration.failure_reason == "worker_lost"
    assert "stopped without a word (2 attempts)" in iteration.failure_message
    assert sweep_iterations() == 0

    again = start_iteration(project=project, by=users["admin"], force=True)
    assert again.status == "queued" and again.number == 2


def test_a_live_lease_is_left_alone_and_start_sweeps_first(broker, project, users, build_dataset):
    settings.LOUPE_TRAIN_MAX_ATTEMPTS = 1
    build_dataset(project, {"red": 5, "green": 5})
    lost = Iteration.objects.create(
        project=project,
        number=1,
        name="Iteration 1",
        status="training",
        backbone="lite0",
        attempts=1,
        lease_expires=timezone.now() + timezone.timedelta(hours=1),
    )
    assert sweep_iterations() == 0
    Iteration.objects.filter(pk=lost.pk).update(
        lease_expires=timezone.now() - timezone.timedelta(seconds=1)
    )
    # No sweep in between: starting a training notices the dead worker itself.
    new = start_iteration(project=project, by=users["admin"])
    lost.refresh_from_db()
    assert lost.failure_reason == "worker_lost" and new.number == 2


def test_an_unreachable_broker_fails_the_iteration_instead_of_leaving_it_queued(
    project, users, build_dataset
):
    from project.celery import app

    saved = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    _reset_connections(app)
    try:
        build_dataset(project, {"red": 5, "green": 5})
        iteration = start_iteration(project=project, by=users["admin"])
    finally:
        app.conf.broker_url = saved
        _reset_connections(app)
    iteration.refresh_from_db()
    assert iteration.status == "failed" and iteration.failure_reason == "unexpected"
    assert "could not be reached" in iteration.failure_message
