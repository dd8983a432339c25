""" "Training images like this one" under a quick test that is not stored: the nearest training
images by the embedding the model returned (predictions.services.similar.
training_images_like_upload), on the page and in the native API, with a real Lite0 model."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Project
from predictions.models import Prediction
from tests.factories import TagFactory
from tests.predictions.conftest import colour_iteration
from tests.predictions.test_more_like_this import _training_set
from tests.training.test_embedding_map import _encoded, _photo
from training.ml.decode import load_rgb
from training.ml.domains import BACKBONE_FOR_DOMAIN
from training.ml.features import FeatureCache, embed_pil, stock_engine
from training.models import Iteration

COMPACT = BACKBONE_FOR_DOMAIN["general_compact"]  # what a new project embeds with

pytestmark = pytest.mark.django_db

UPLOAD = _encoded(_photo(40))  # photo 40: the training set holds a resized copy of it


@pytest.fixture(scope="session")
def lite0_artifact(colour_artifact) -> bytes:
    """The colour classifier's head on the stock Lite0 backbone at its own 224 px: a quick
    model of the project's domain, whose embedding is the training images' embedding."""
    from training.ml.artifact import load_artifact, save_artifact

    artifact = dataclasses.replace(load_artifact(io.BytesIO(colour_artifact)), backbone=COMPACT)
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


def _iteration(project: Project, artifact: bytes, **fields) -> Iteration:
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, artifact)
    Iteration.objects.filter(pk=iteration.pk).update(backbone=COMPACT, **fields)
    return iteration


def _expected_order(images) -> list[int]:
    """The training images by cosine similarity to the upload's stock Lite0 embedding,
    computed here from the feature cache, independently of the service."""
    picture = load_rgb(UPLOAD, draft_size=224)
    query = embed_pil(stock_engine(COMPACT), [picture], COMPACT)[0]
    cache = FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR).get_many(
        [i.sha256 for i in images], COMPACT
    )
    matrix = np.stack([cache[i.sha256] for i in images])
    similarity = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    return [images[row].pk for row in np.argsort(-similarity, kind="stable")]


def _page(client, project: Project, iteration: Iteration, *, store: bool = False):
    data = {"iteration": iteration.pk, "image": SimpleUploadedFile("t.png", UPLOAD, "image/png")}
    if store:
        data["store"] = "1"
    return client.post(reverse("predictions:quick-test", args=[project.pk]), data)


def _api(api_client, project: Project, iteration: Iteration, **extra):
    upload = SimpleUploadedFile("t.png", UPLOAD, content_type="image/png")
    return api_client.post(
        f"/api/projects/{project.pk}/quick-test/",
        {"iteration_id": iteration.pk, "image": upload, **extra},
    )


def test_a_quick_test_not_stored_shows_the_nearest_training_images_in_order(
    project, users, client_for, api_client, lite0_artifact
) -> None:
    images, copy = _training_set(project, copy_of=40)
    iteration = _iteration(project, lite0_artifact)
    expected = _expected_order(images)
    assert expected[0] == copy.pk  # the test's own premise: the resized copy is nearest

    response = _page(client_for(users["annotator"]), project, iteration)
    assert response.status_code == 200
    shown = [image.pk for image in response.context["like"].images]
    assert shown == expected[:12]
    html = response.content.decode()
    assert "Training images like this one" in html
    # Each thumbnail opens the image's tagging view, as the gallery's cards do, in order.
    links = [reverse("labeling:image-tag", args=[project.pk, pk]) for pk in expected[:12]]
    positions = [html.index(f'href="{link}"') for link in links]
    assert positions == sorted(positions)
    assert not Prediction.objects.exists()  # nothing was stored to find them

    api_client.force_authenticate(users["annotator"])
    body = _api(api_client, project, iteration).json()
    assert body["prediction_id"] is None
    assert body["similar_image_ids"] == expected[:12]
    # Stored: the image itself links "More like this"; the API answers null.
    api_client.force_authenticate(users["reviewer"])
    stored = _api(api_client, project, iteration, store=True).json()
    assert stored["image_id"] is not None and stored["similar_image_ids"] is None
    page = _page(client_for(users["reviewer"]), project, iteration, store=True)
    assert "like" not in page.context and "Training images like this one" not in page.text


def test_a_fine_tuned_models_embedding_is_not_compared(
    project, users, client_for, api_client, lite0_artifact
) -> None:
    _training_set(project, copy_of=40)
    iteration = _iteration(project, lite0_artifact, training_type=Iteration.TrainingType.ADVANCED)

    response = _page(client_for(users["annotator"]), project, iteration)
    assert response.status_code == 200
    assert response.context["like"].images == []
    html = response.content.decode()
    assert 'data-testid="quick-test-like-absent"' in html and "fine-tuned" in html
    assert 'data-testid="quick-test-like-link"' not in html

    api_client.force_authenticate(users["annotator"])
    body = _api(api_client, project, iteration).json()
    assert body["predictions"] and body["similar_image_ids"] is None


def test_without_embedded_training_images_the_strip_says_so(
    project, users, client_for, api_client, lite0_artifact
) -> None:
    iteration = _iteration(project, lite0_artifact)  # no training image embedded yet

    response = _page(client_for(users["annotator"]), project, iteration)
    assert "No training image has an embedding yet" in response.content.decode()
    api_client.force_authenticate(users["annotator"])
    assert _api(api_client, project, iteration).json()["similar_image_ids"] == []
