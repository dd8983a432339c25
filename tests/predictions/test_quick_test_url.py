"""Quick test page: an image URL option (fetched on the server under fetch's rules) and the
tested file's own name kept on a stored prediction."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Image
from predictions.models import Prediction
from tests.image_server import serve
from tests.predictions.conftest import RED, colour_png

pytestmark = pytest.mark.django_db


def post(client, trained, **fields):
    return client.post(
        reverse("predictions:quick-test", args=[trained.project.id]),
        {"iteration": trained.iteration.pk, **fields},
    )


def test_a_stored_upload_keeps_the_files_name(client_for, trained):
    response = post(
        client_for(trained.admin),
        trained,
        image=SimpleUploadedFile("shelf-0042.png", colour_png(RED), "image/png"),
        store="1",
    )
    assert response.status_code == 200
    assert 'data-testid="quick-test-stored"' in response.content.decode()
    image = Prediction.objects.get().image
    assert image.original_name == "shelf-0042.png"
    assert image.source == Image.Source.PREDICTION


def test_an_image_url_is_fetched_tested_and_stored_under_its_name(client_for, trained, settings):
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
    with serve({"/cams/red-door.png": (200, {}, colour_png(RED))}) as base:
        response = post(
            client_for(trained.admin), trained, url=f"{base}/cams/red-door.png", store="1"
        )
    html = response.content.decode()
    assert response.status_code == 200, html
    assert html.count('data-testid="quick-test-row"') == 3
    assert "red-door.png" in html  # named above the results
    assert "data:image/png;base64," in html  # the fetched picture is shown
    prediction = Prediction.objects.get()
    assert prediction.results[0]["tagName"] == "red"
    assert prediction.image.original_name == "red-door.png"


def test_a_loopback_url_is_refused_with_the_reason(client_for, trained, settings):
    settings.LOUPE_FETCH_ALLOW_NETWORKS = ""
    with serve({"/a.png": (200, {}, colour_png(RED))}) as base:
        response = post(client_for(trained.admin), trained, url=f"{base}/a.png", store="1")
    html = response.content.decode()
    assert response.status_code == 422
    assert "only fetches images from public addresses" in html
    assert 'data-testid="quick-test-error"' in html
    assert f'value="{base}/a.png"' in html  # the URL stays in the field to correct
    assert not Prediction.objects.exists()


def test_an_annotator_storing_a_url_is_refused_before_anything_is_fetched(
    client_for, trained, users, settings
):
    settings.LOUPE_FETCH_ALLOW_NETWORKS = "127.0.0.0/8"
    hits: list[str] = []

    def image(handler) -> None:
        hits.append(handler.path)
        handler.send_response(500)
        handler.end_headers()

    with serve({"/a.png": image}) as base:
        response = post(client_for(users["annotator"]), trained, url=f"{base}/a.png", store="1")
    assert response.status_code == 422
    assert "Annotators can test an image but not store it" in response.content.decode()
    assert hits == []


@pytest.mark.parametrize("both", [False, True])
def test_one_image_source_exactly(client_for, trained, both):
    fields = {"url": "https://example.com/a.png"} if both else {}
    if both:
        fields["image"] = SimpleUploadedFile("a.png", colour_png(RED), "image/png")
    response = post(client_for(trained.admin), trained, **fields)
    assert response.status_code == 422
    assert "Choose an image file or give an image URL" in response.content.decode()
