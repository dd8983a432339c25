"""Custom Vision's prediction routes through the ASGI application the server runs: the fast
lane (customvision/fast_lane.py) serves them, as it serves the /api/predict/ aliases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from customvision import fast_lane
from customvision.ids import Kind, from_uuid, to_uuid
from predictions.models import Prediction
from project.asgi import application
from tests.image_server import serve
from tests.predictions.conftest import BLUE, RED, colour_png

pytestmark = pytest.mark.django_db(transaction=True)


def send(url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.post(url, **kwargs)

    return asyncio.run(go())


def _url(published, tail: str) -> str:
    pid = to_uuid(Kind.PROJECT, published.project.pk)
    return f"/customvision/v3.1/Prediction/{pid}/classify/iterations/prod/{tail}"


def test_the_lane_serves_custom_vision_routes(classifier, monkeypatch) -> None:
    calls = []
    real = fast_lane.answer
    monkeypatch.setattr(fast_lane, "answer", lambda call: calls.append(call) or real(call))
    boundary = "cv-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="imageData"\r\n\r\n'.encode()
        + colour_png(RED)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = send(
        _url(classifier, "image"),
        content=body,
        headers={
            "Prediction-Key": classifier.key,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert response.status_code == 200, response.text
    assert len(calls) == 1 and calls[0].ids == "uuids"  # the lane answered, not Django
    payload = response.json()
    assert payload["predictions"][0]["tagName"] == "red"
    assert payload["predictions"][0]["tagId"] == to_uuid(Kind.TAG, classifier.tags[0].pk)
    assert Prediction.objects.get().pk == from_uuid(payload["id"], Kind.PREDICTION)


def test_the_lane_fetches_a_url(classifier, settings) -> None:
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
    with serve({"/b.png": (200, {"Content-Type": "image/png"}, colour_png(BLUE))}) as base:
        response = send(
            _url(classifier, "url/nostore"),
            json={"url": f"{base}/b.png"},
            headers={"Prediction-Key": classifier.key},
        )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["tagName"] == "blue"
    assert not Prediction.objects.exists()


def test_the_lane_answers_custom_vision_errors(classifier) -> None:
    wrong = send(
        _url(classifier, "image"), content=colour_png(RED), headers={"Prediction-Key": "x"}
    )
    assert wrong.status_code == 401 and wrong.json()["code"] == "Unauthorized"
    assert set(wrong.json()) == {"code", "message"}
    too_big = send(
        _url(classifier, "url"),
        content=b"{" + b" " * 20_000 + b"}",
        headers={"Prediction-Key": classifier.key},
    )
    assert too_big.status_code == 400 and too_big.json()["code"] == "BadRequest"
    assert "too large" in too_big.json()["message"]


def test_a_chunked_body_past_the_limit_stops_early(classifier, settings) -> None:
    settings.LOUPE_MAX_PREDICTION_BYTES = 1000
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):  # 64 MB if the lane read it all
            sent.append(1)
            yield b"x" * 65536

    response = send(
        _url(classifier, "image"), content=chunks(), headers={"Prediction-Key": classifier.key}
    )
    assert response.status_code == 400 and response.json()["code"] == "BadRequestImageSizeBytes"
    assert len(sent) < 1000
    assert not Prediction.objects.exists()
