""" "More like this" from a stored prediction (predictions.services.similar): its stored
embedding against the training images' (the real Lite0 backbone), roles, and the links on the
prediction panel, the Predictions tab, the quick test and the box editor."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from django.conf import settings
from django.urls import reverse

from labeling.models import Project, Role
from predictions.model_cache import ModelOutput
from predictions.models import Prediction
from predictions.services.predict import CheckedImage, score_output, store_prediction, target_for
from predictions.services.similar import similar_image_ids
from project.errors import Forbidden, NotFound
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory
from tests.predictions.conftest import RED
from tests.predictions.test_pages import quick
from tests.training.conftest import make_iteration
from tests.training.test_embedding_map import _encoded, _photo
from training.ml.domains import BACKBONE_FOR_DOMAIN
from training.ml.features import FeatureCache, embed_pil, stock_engine
from training.models import Iteration
from training.services.embeddings import cached_embeddings

COMPACT = BACKBONE_FOR_DOMAIN["general_compact"]  # what a new project embeds with

pytestmark = pytest.mark.django_db

SIZE = 96


def _training_set(project: Project, *, copy_of: int, count: int = 13):
    """`count` different photos, plus a resized, re-encoded copy of photo `copy_of` (not itself
    in the set), all embedded into the feature cache as the map's worker leaves them."""
    images = [
        ImageFactory(project=project, content=_encoded(_photo(seed)), width=SIZE, height=SIZE)
        for seed in range(count)
    ]
    small = _photo(copy_of).resize((64, 64))
    copy = ImageFactory(
        project=project, content=_encoded(small, "JPEG", quality=80), width=64, height=64
    )
    images.append(copy)
    cached_embeddings(project, [i.sha256 for i in images], embed_missing=True)
    return images, copy


def _iteration(project: Project, **fields) -> Iteration:
    """A completed Lite0 iteration with a model file name (the forward pass is not run here)."""
    return make_iteration(project, artifact="iterations/model.pt", **fields)


def _stored_prediction(project: Project, iteration: Iteration, seed: int, embedding=None):
    """Photo `seed` stored as a prediction of `iteration`, with the embedding its (stock
    backbone) model would serve, unless `embedding` is given."""
    picture = _photo(seed)
    if embedding is None:
        embedding = embed_pil(stock_engine(COMPACT), [picture], COMPACT)[0]
    data = _encoded(picture)
    checked = CheckedImage(data, hashlib.sha256(data).hexdigest(), "PNG", SIZE, SIZE)
    target = target_for(project, iteration)
    output = ModelOutput(np.array([0.6, 0.4], dtype=np.float32), [], embedding)
    return store_prediction(target=target, image=checked, outcome=score_output(target, output))


def _is_cached(prediction: Prediction) -> bool:
    cache = FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR)
    return bool(cache.get_many([prediction.image.sha256], COMPACT))


def test_a_resized_copy_of_the_predictions_image_comes_first(project, users) -> None:
    images, copy = _training_set(project, copy_of=40)
    iteration = _iteration(project)  # quick, Lite0: it serves the stock embedding
    prediction = _stored_prediction(project, iteration, seed=40)
    reviewer = users[str(Role.REVIEWER)]

    by_prediction = similar_image_ids(project=project, by=reviewer, prediction=prediction)
    by_image = similar_image_ids(project=project, by=reviewer, image=prediction.image)
    assert by_prediction[0] == copy.pk
    assert by_image == by_prediction
    assert sorted(by_prediction) == sorted(i.pk for i in images)  # training images only
    # The stored embedding answered: the prediction's image was never embedded again.
    assert not _is_cached(prediction)

    # The stored vector is what counts: another photo's embedding leads elsewhere.
    photo_3 = embed_pil(stock_engine(COMPACT), [_photo(3)], COMPACT)[0]
    other = _stored_prediction(project, iteration, seed=41, embedding=photo_3)
    assert similar_image_ids(project=project, by=reviewer, prediction=other)[0] == images[3].pk


def test_a_fine_tuned_models_embedding_is_not_compared_the_image_is_embedded(
    project, users
) -> None:
    _, copy = _training_set(project, copy_of=40)
    iteration = _iteration(project, training_type=Iteration.TrainingType.ADVANCED)
    # A fine-tuned model's features live in another space: a vector that would point anywhere.
    noise = np.random.default_rng(0).standard_normal(1280).astype(np.float32)
    prediction = _stored_prediction(project, iteration, seed=40, embedding=noise)

    ids = similar_image_ids(project=project, by=users["admin"], prediction=prediction)
    assert ids[0] == copy.pk
    assert _is_cached(prediction)  # embedded with the stock backbone, once


def test_a_prediction_of_another_project_is_refused(project, users) -> None:
    other_project = ProjectFactory()
    prediction = _stored_prediction(other_project, _iteration(other_project), seed=1)
    with pytest.raises(NotFound):
        similar_image_ids(project=project, by=users["admin"], prediction=prediction)
    with pytest.raises(NotFound):  # nor by its image
        similar_image_ids(project=project, by=users["admin"], image=prediction.image)


def test_a_stored_prediction_needs_the_reviewer_role(project, users) -> None:
    prediction = _stored_prediction(project, _iteration(project), seed=1)
    with pytest.raises(Forbidden):
        similar_image_ids(project=project, by=users[str(Role.ANNOTATOR)], prediction=prediction)


def test_the_gallery_shows_the_training_images_like_a_prediction(
    project, users, client_for
) -> None:
    _, copy = _training_set(project, copy_of=40)
    prediction = _stored_prediction(project, _iteration(project), seed=40)
    url = f"/projects/{project.pk}/?like={prediction.image_id}"

    response = client_for(users[str(Role.REVIEWER)]).get(url)
    assert response.status_code == 200
    assert list(response.context["image_set"].image_ids[:2]) == [prediction.image_id, copy.pk]
    assert f"More like image {prediction.image_id}" in response.content.decode()
    # The grid shows training images only: the copy first, never the prediction itself.
    shown = [image.pk for image in response.context["page"].images]
    assert copy.pk in shown and prediction.image_id not in shown

    assert client_for(users[str(Role.ANNOTATOR)]).get(url).status_code == 403
    assert client_for(users["non_member"]).get(url).status_code == 404


def _like_link(project: Project, image_id: int) -> str:
    return f'href="/projects/{project.pk}/?like={image_id}"'


def test_the_prediction_panel_and_the_predictions_tab_link_more_like_this(
    project, users, client_for
) -> None:
    iteration = _iteration(project)
    prediction = _stored_prediction(project, iteration, seed=1)
    client = client_for(users[str(Role.REVIEWER)])
    link = _like_link(project, prediction.image_id)

    panel = client.get(reverse("labeling:image-tag", args=[project.pk, prediction.image_id]))
    html = panel.content.decode()
    assert 'data-testid="prediction-panel"' in html
    assert link in html and html.count('data-testid="more-like-this"') == 1

    tab = client.get(reverse("predictions:prediction-list", args=[project.pk]))
    assert link in tab.content.decode()


def test_a_stored_quick_test_links_more_like_this(client_for, users, trained) -> None:
    response = quick(client_for(users["reviewer"]), trained, RED, store=True)
    stored = Prediction.objects.get()
    assert _like_link(trained.project, stored.image_id) in response.content.decode()
    # Not stored: there is no image to start from, and no link.
    response = quick(client_for(users["annotator"]), trained, RED, store=False)
    assert 'data-testid="more-like-this"' not in response.content.decode()


def test_the_box_editor_links_more_like_this(users, client_for) -> None:
    detection = ProjectFactory(kind=Project.Kind.DETECTION)
    MembershipFactory(project=detection, user=users["admin"], role=Role.ADMIN)
    image = ImageFactory(project=detection)
    response = client_for(users["admin"]).get(
        reverse("labeling:image-boxes", args=[detection.pk, image.pk])
    )
    html = response.content.decode()
    assert _like_link(detection, image.pk) in html
    # The link follows the editor from image to image (static/js/more-like-this.js).
    assert f'data-more-like="/projects/{detection.pk}/?like="' in html
    assert "js/more-like-this.js" in html
