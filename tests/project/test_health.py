"""/healthz: 200 with details when database, broker and workers are up; 503 naming what is down."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_is_ok_with_a_real_worker(client, celery_worker_redis):
    response = client.get("/healthz")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok", "worker": "ok"}
    assert body["problems"] == []
    assert body["workers"][celery_worker_redis.hostname] == [
        "celery",
        "predict",
        "thumbnails",
        "train",
    ]


def test_healthz_names_the_worker_when_none_answers(client, broker):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "broker": "ok", "worker": "down"}
    assert body["problems"] == ["worker: no worker answered within 1 s"]
    assert body["elapsed_ms"] < 5000


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:1/0"], indirect=True)
def test_healthz_names_the_broker_when_it_is_unreachable(client, broker):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"database": "ok", "broker": "down", "worker": "unknown"}
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith("broker: ")
    assert body["elapsed_ms"] < 5000


def test_healthz_needs_no_login_and_is_never_cached(client, broker):
    response = client.get("/healthz")

    assert response.status_code == 503  # answered, not redirected to the login page
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)  # the worker thread closes Django's connections
def test_healthz_names_a_queue_that_no_worker_consumes(client, broker):
    from celery.contrib.testing.worker import start_worker

    from project.celery import app

    short_queues = ["celery", "thumbnails", "predict"]  # a deployment that forgot `train`
    with start_worker(
        app, pool="solo", queues=short_queues, perform_ping_check=False, loglevel="WARNING"
    ):
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["worker"] == "down"
    assert body["problems"] == ["worker: no worker consumes the 'train' queue"]
    assert list(body["workers"].values()) == [sorted(short_queues)]
