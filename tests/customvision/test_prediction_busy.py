"""A prediction that cannot be answered yet because the server is busy gets a retryable 503
with Retry-After, never the generic 500 ("The server could not answer this prediction").

Reproduced for real, through the ASGI application the server runs: another request's model
load is held (the cold first load after publishing, slow on a loaded 2-core server), and a
database lock is held by another connection past the request's busy wait.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading

import pytest
from django.db import OperationalError

from customvision.ids import Kind, to_uuid
from customvision.prediction import database_busy
from predictions.model_cache import model_cache
from predictions.models import Prediction
from tests.customvision.test_prediction_fast_lane import send
from tests.predictions.conftest import BLUE, colour_png

pytestmark = pytest.mark.django_db(transaction=True)


def _classify(published) -> object:
    pid = to_uuid(Kind.PROJECT, published.project.pk)
    return send(
        f"/customvision/v3.0/Prediction/{pid}/classify/iterations/prod/image",
        content=colour_png(BLUE),
        headers={"Prediction-Key": published.key, "Content-Type": "application/octet-stream"},
    )


def test_a_request_behind_a_slow_model_load_gets_503_with_retry_after(classifier, monkeypatch):
    cache = model_cache()
    monkeypatch.setattr(cache, "load_wait_s", 0.5)
    key = (classifier.iteration.pk, classifier.iteration.artifact.name)
    loading, release = threading.Event(), threading.Event()

    def slow_load():  # another request's first load, still running
        loading.set()
        release.wait(20)
        raise RuntimeError("that load was given up")

    def other_request() -> None:
        with contextlib.suppress(RuntimeError):
            cache.get(key, slow_load)

    other = threading.Thread(target=other_request)
    other.start()
    # Without a bounded wait the request below would sit behind that load; let it go after
    # 10 s so such a failure ends (the request then loads the model itself and answers 200).
    timer = threading.Timer(10, release.set)
    timer.start()
    try:
        assert loading.wait(10)
        response = _classify(classifier)
    finally:
        release.set()
        timer.cancel()
        other.join(20)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json()["code"] == "ServiceUnavailable"
    assert "try again in 5 seconds" in response.json()["message"]
    assert not Prediction.objects.exists()
    # The other load is over: the same request now loads the model and is answered.
    again = _classify(classifier)
    assert again.status_code == 200, again.text
    assert again.json()["predictions"][0]["tagName"] == "blue"
    assert Prediction.objects.count() == 1


def test_a_lock_wait_that_runs_out_is_busy_not_a_broken_query(tmp_path):
    path = tmp_path / "busy.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    waiter = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            waiter.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError) as broken:
            waiter.execute("INSERT INTO missing VALUES (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiter.close()
    # Django wraps the driver's error and keeps it as the cause, as here.
    assert database_busy(_wrapped(locked.value))
    assert not database_busy(_wrapped(broken.value))


def _wrapped(cause: Exception) -> OperationalError:
    err = OperationalError(str(cause))
    err.__cause__ = cause
    return err
