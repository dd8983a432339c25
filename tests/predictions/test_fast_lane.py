"""The prediction API through the ASGI application the server runs (customvision/fast_lane.py).

These go through project.asgi.application, as uvicorn does, so they run the fast lane and not
the Django view the test client reaches. The lane answers on a pool thread with its own
database connection, hence transactional tests (the data must be committed to be seen there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from django.test import Client

from customvision import fast_lane
from predictions.models import Prediction
from predictions.services.keys import revoke_key
from project.asgi import application
from tests.predictions.conftest import GREEN, RED, colour_png

pytestmark = pytest.mark.django_db(transaction=True)


def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.request(method, url, **kwargs)

    return asyncio.run(go())


def predict(url: str, data: bytes, key: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream", **kwargs.pop("headers", {})}
    if key is not None:
        headers["Prediction-Key"] = key
    return send("POST", url, content=data, headers=headers, **kwargs)


def test_the_lane_answers_as_the_django_view_does_and_stores(trained):
    lane = predict(trained.url(), colour_png(GREEN), trained.key, params={"application": "cam"})
    view = Client().post(
        trained.url(nostore=True),
        colour_png(GREEN),
        content_type="application/octet-stream",
        HTTP_PREDICTION_KEY=trained.key,
    )

    assert lane.status_code == 200
    assert lane.headers["content-type"] == "application/json"
    body = lane.json()
    probabilities = [row["probability"] for row in body["predictions"]]
    assert body["predictions"][0]["tagName"] == "green"
    assert probabilities == sorted(probabilities, reverse=True)
    assert body["predictions"] == view.json()["predictions"]
    assert body["iteration"] == trained.iteration.pk
    stored = Prediction.objects.get(pk=body["id"])
    assert stored.application == "cam"
    assert stored.image.source == "prediction" and not stored.image.is_training


def test_nostore_and_multipart_without_a_filename(trained):
    boundary = "lane-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="imageData"\r\n\r\n'.encode()
        + colour_png(RED)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = send(
        "POST",
        trained.url(nostore=True),
        content=body,
        headers={
            "Prediction-Key": trained.key,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json()["id"] is None
    assert response.json()["predictions"][0]["tagName"] == "red"
    assert not Prediction.objects.exists()


def test_every_error_status_in_the_api_shape(trained, settings):
    good = colour_png(GREEN)
    wrong_key = predict(trained.url(), good, "not-a-key")
    no_key = predict(trained.url(), good, None)
    no_project = predict(trained.url(project_id=trained.project.pk + 99), good, trained.key)
    no_name = predict(trained.url(name="nope"), good, trained.key)
    wrong_kind = predict(trained.url(kind="detect"), good, trained.key)
    corrupt = predict(trained.url(), good[:60], trained.key)
    not_image = predict(trained.url(), b"hello", trained.key)
    settings.LOUPE_MAX_PREDICTION_BYTES = 100
    too_large = predict(trained.url(), b"x" * (200 * 1024), trained.key)

    assert (wrong_key.status_code, no_key.status_code) == (401, 401)
    # Another project's key on a project that does not exist: 401, as on one that does (no
    # existence oracle; tests/project/test_security_settings.py).
    assert (no_project.status_code, no_name.status_code) == (401, 404)
    assert wrong_kind.status_code == 400
    assert wrong_kind.json()["code"] == "BadRequestWrongModelKind"
    assert (corrupt.status_code, corrupt.json()["code"]) == (400, "BadRequestImageFormat")
    assert corrupt.json()["reason"] == "corrupt"
    assert not_image.json()["reason"] == "not_an_image"
    assert (too_large.status_code, too_large.json()["code"]) == (413, "BadRequestImageSizeBytes")
    assert not Prediction.objects.exists()


def test_a_chunked_body_past_the_limit_is_413_without_reading_it_all(trained, settings):
    settings.LOUPE_MAX_PREDICTION_BYTES = 1000
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):  # 64 MB if the lane read it all
            sent.append(1)
            yield b"x" * 65536

    response = predict(trained.url(), b"", trained.key, headers={})
    assert response.status_code == 400  # empty body: a clear reason, not a crash

    response = send(
        "POST",
        trained.url(),
        content=chunks(),
        headers={"Prediction-Key": trained.key, "Content-Type": "application/octet-stream"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert len(sent) < 1000


def test_a_revoked_key_stops_working_at_once(trained):
    assert predict(trained.url(), colour_png(RED), trained.key).status_code == 200
    key = trained.project.prediction_keys.get()
    revoke_key(project=trained.project, key_id=key.pk, by=trained.admin)
    assert predict(trained.url(), colour_png(RED), trained.key).status_code == 401


def test_security_headers_as_the_middleware_adds_them(trained, settings):
    settings.X_FRAME_OPTIONS = "DENY"
    response = predict(trained.url(nostore=True), colour_png(RED), trained.key)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == settings.SECURE_REFERRER_POLICY


def test_what_the_lane_does_not_handle_goes_to_django(trained, settings):
    # Another method on a prediction path: Django's require_POST answers.
    assert send("GET", trained.url()).status_code == 405
    # Any other path is Django's, middleware and all (the login page sets its CSRF cookie).
    login = send("GET", "/accounts/login/")
    assert login.status_code == 200
    assert "csrftoken" in login.cookies
    # A POST elsewhere still meets Django's middleware: no CSRF token, 403.
    assert send("POST", "/accounts/login/", data={"username": "x"}).status_code == 403
    # A Host outside ALLOWED_HOSTS: Django refuses it, the lane never answers it.
    settings.ALLOWED_HOSTS = ["loupe.example"]
    refused = predict(trained.url(), colour_png(RED), trained.key)
    assert refused.status_code == 400
    assert not Prediction.objects.exists()
    allowed = predict(
        trained.url(), colour_png(RED), trained.key, headers={"Host": "loupe.example"}
    )
    assert allowed.status_code == 200


def test_an_unexpected_error_is_a_logged_500_and_the_next_request_works(
    trained, monkeypatch, caplog
):
    real = fast_lane.answer

    def broken(call):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(fast_lane, "answer", broken)
    failed = predict(trained.url(), colour_png(RED), trained.key)
    monkeypatch.setattr(fast_lane, "answer", real)
    recovered = predict(trained.url(), colour_png(RED), trained.key)

    assert failed.status_code == 500
    assert failed.json()["code"] == "InternalServerError"
    assert "boom" not in failed.text
    assert any("boom" in str(record.exc_info) for record in caplog.records)
    assert recovered.status_code == 200
