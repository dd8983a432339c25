"""The Predictions tab: ranking, review pre-fill, Save and close exactly once, Dismiss."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from labeling.models import Image, ImageTag
from predictions.models import Prediction, PredictionScore
from tests.predictions.helpers import crafted_prediction
from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db


@pytest.fixture
def iteration(project):
    from tests.factories import TagFactory

    TagFactory(project=project, name="cat")
    TagFactory(project=project, name="dog")
    iteration = make_iteration(project, tags=("cat", "dog"))
    # make_iteration links no Tag rows; the tab needs them for tag ids. 30 labels a tag and the
    # fixture's mAP of 0.85: a model good enough for "Most gain" to put its doubts first.
    for it_tag, tag in zip(
        iteration.tags.order_by("index"), project.tags.order_by("id"), strict=True
    ):
        it_tag.tag = tag
        it_tag.image_count = 30
        it_tag.save()
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    return iteration


def shown_ids(response) -> list[int]:
    html = response.content.decode()
    ids = []
    for chunk in html.split('data-testid="prediction-thumb" data-image-id="')[1:]:
        ids.append(int(chunk.split('"', 1)[0]))
    return ids


def tab(client, project, **query):
    return client.get(reverse("predictions:prediction-list", args=[project.id]), query)


def test_an_unsure_prediction_ranks_above_a_sure_one(client_for, project, users, iteration):
    sure = crafted_prediction(project, iteration, [0.99, 0.01])
    unsure = crafted_prediction(project, iteration, [0.51, 0.49])
    middling = crafted_prediction(project, iteration, [0.8, 0.2])
    assert unsure.uncertainty > middling.uncertainty > sure.uncertainty
    response = tab(client_for(users["reviewer"]), project)
    assert response.status_code == 200
    assert shown_ids(response) == [unsure.image_id, middling.image_id, sure.image_id]


def test_two_identical_uncertain_images_are_not_both_on_top(client_for, project, users, iteration):
    rng = np.random.default_rng(0)
    same = rng.standard_normal(64).astype(np.float32)
    first = crafted_prediction(project, iteration, [0.5, 0.5], embedding=same)
    twin = crafted_prediction(project, iteration, [0.5, 0.5], embedding=same.copy())
    others = [
        crafted_prediction(
            project,
            iteration,
            [0.6 + 0.01 * i, 0.4 - 0.01 * i],
            embedding=rng.standard_normal(64).astype(np.float32),
        )
        for i in range(3)
    ]
    ids = shown_ids(tab(client_for(users["reviewer"]), project))
    assert set(ids[:2]) != {first.image_id, twin.image_id}
    assert ids[0] in (first.image_id, twin.image_id)
    # The twin still shows, after every distinct image.
    assert set(ids) == {first.image_id, twin.image_id, *(o.image_id for o in others)}
    assert ids[-1] in (first.image_id, twin.image_id)


def test_newest_and_tag_probability_sorts(client_for, project, users, iteration):
    a = crafted_prediction(project, iteration, [0.9, 0.1])
    b = crafted_prediction(project, iteration, [0.2, 0.8])
    c = crafted_prediction(project, iteration, [0.6, 0.4])
    client = client_for(users["admin"])
    cat = project.tags.get(name="cat")
    assert shown_ids(tab(client, project, sort="newest")) == [c.image_id, b.image_id, a.image_id]
    assert shown_ids(tab(client, project, sort="lowest", tag=cat.id)) == [
        b.image_id,
        c.image_id,
        a.image_id,
    ]
    assert shown_ids(tab(client, project, sort="highest", tag=cat.id)) == [
        a.image_id,
        c.image_id,
        b.image_id,
    ]


def test_annotators_and_outsiders_cannot_open_the_tab(client_for, project, users, iteration):
    assert tab(client_for(users["annotator"]), project).status_code == 403
    assert tab(client_for(users["non_member"]), project).status_code == 404


def review(client, project, *image_ids):
    return client.post(
        reverse("predictions:prediction-review", args=[project.id]),
        {"image_ids": [str(i) for i in image_ids]},
    )


def test_review_opens_the_tagging_view_prefilled_with_the_predicted_tag(
    client_for, project, users, iteration
):
    first = crafted_prediction(project, iteration, [0.3, 0.7])
    second = crafted_prediction(project, iteration, [0.9, 0.1])
    client = client_for(users["reviewer"])
    response = review(client, project, first.image_id, second.image_id)
    assert response.status_code == 302
    assert response.url == (
        reverse("labeling:image-tag", args=[project.id, first.image_id])
        + f"?review={first.image_id},{second.image_id}"
    )
    labels = ImageTag.objects.filter(image_id=first.image_id).values_list("tag__name", flat=True)
    assert list(labels) == ["dog"]
    page = client.get(response.url)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-testid="save-and-close"' in html and "Prediction 1 of 2 selected" in html
    # Reopening keeps a reviewer's correction instead of pre-filling again.
    ImageTag.objects.filter(image_id=first.image_id).delete()
    review(client, project, first.image_id)
    assert not ImageTag.objects.filter(image_id=first.image_id).exists()


def save_and_close(client, project, image_id, queue=""):
    return client.post(
        reverse("predictions:prediction-promote", args=[project.id, image_id]), {"queue": queue}
    )


def test_save_and_close_moves_the_image_into_training_exactly_once(
    client_for, project, users, iteration
):
    prediction = crafted_prediction(project, iteration, [0.45, 0.55])
    client = client_for(users["reviewer"])
    review(client, project, prediction.image_id)
    training_before = project.images.training().count()

    first = save_and_close(client, project, prediction.image_id)
    second = save_and_close(client, project, prediction.image_id)
    assert first.status_code == second.status_code == 302
    assert project.images.training().count() == training_before + 1
    image = Image.objects.get(pk=prediction.image_id)
    assert image.is_training and image.is_tagged
    assert list(image.image_tags.values_list("tag__name", flat=True)) == ["dog"]
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.PROMOTED
    assert prediction.reviewed_by == users["reviewer"]
    assert not PredictionScore.objects.filter(prediction=prediction, is_open=True).exists()
    assert shown_ids(tab(client, project)) == []
    # It shows in the gallery of training images.
    gallery = client.get(reverse("labeling:project-detail", args=[project.id]))
    assert f'data-image-id="{prediction.image_id}"' in gallery.content.decode()


def test_save_and_close_goes_on_to_the_next_selected_image(client_for, project, users, iteration):
    a = crafted_prediction(project, iteration, [0.45, 0.55])
    b = crafted_prediction(project, iteration, [0.55, 0.45])
    client = client_for(users["reviewer"])
    review(client, project, a.image_id, b.image_id)
    queue = f"{a.image_id},{b.image_id}"
    response = save_and_close(client, project, a.image_id, queue=queue)
    assert response.url == (
        reverse("labeling:image-tag", args=[project.id, b.image_id]) + f"?review={queue}"
    )
    response = save_and_close(client, project, b.image_id, queue=queue)
    assert response.url == reverse("predictions:prediction-list", args=[project.id])


def dismiss_in_review(client, project, image_id, queue):
    return client.post(
        reverse("predictions:prediction-dismiss", args=[project.id]),
        {"image_ids": str(image_id), "queue": queue, "from_review": "1"},
    )


def test_a_review_queue_ends_on_the_tab_with_a_summary(client_for, project, users, iteration):
    a, b, c = (
        crafted_prediction(project, iteration, p) for p in ([0.45, 0.55], [0.6, 0.4], [0.5, 0.5])
    )
    client = client_for(users["reviewer"])
    review(client, project, a.image_id, b.image_id, c.image_id)
    queue = f"{a.image_id},{b.image_id},{c.image_id}"
    training_before = project.images.training().count()
    assert save_and_close(client, project, a.image_id, queue=queue).url.endswith(
        f"/images/{b.image_id}/?review={queue}"
    )
    response = dismiss_in_review(client, project, b.image_id, queue)
    assert response.url.endswith(f"/images/{c.image_id}/?review={queue}")
    response = save_and_close(client, project, c.image_id, queue=queue)
    assert response.url == reverse("predictions:prediction-list", args=[project.id])
    page = client.get(response.url)
    assert "Review done: 2 added to training, 1 dismissed." in page.content.decode()
    assert project.images.training().count() == training_before + 2
    assert shown_ids(page) == []


def test_a_skipped_prediction_comes_round_again_before_the_summary(
    client_for, project, users, iteration
):
    a, b = (crafted_prediction(project, iteration, p) for p in ([0.45, 0.55], [0.6, 0.4]))
    client = client_for(users["reviewer"])
    review(client, project, a.image_id, b.image_id)
    queue = f"{a.image_id},{b.image_id}"
    # The reviewer skipped a (→) and saves b, the last one: a is still open, so it comes next.
    response = save_and_close(client, project, b.image_id, queue=queue)
    assert response.url.endswith(f"/images/{a.image_id}/?review={queue}")


def test_a_tag_key_on_a_prediction_under_review_never_moves_on(
    client_for, project, users, iteration
):
    from labeling.models import Tag

    a, b = (crafted_prediction(project, iteration, p) for p in ([0.45, 0.55], [0.6, 0.4]))
    client = client_for(users["reviewer"])
    review(client, project, a.image_id, b.image_id)
    cat = Tag.objects.get(project=project, name="cat")
    image = Image.objects.get(pk=a.image_id)
    response = client.post(
        reverse("labeling:image-tag-toggle", args=[project.id, a.image_id])
        + f"?review={a.image_id},{b.image_id}",
        {"tag": cat.id, "version": image.version, "advance": "1"},
        headers={"HX-Request": "true", "HX-Target": "tag-form"},
    )
    assert response.status_code == 200
    assert "HX-Push-Url" not in response and "HX-Retarget" not in response
    assert list(ImageTag.objects.filter(image=image).values_list("tag__name", flat=True)) == ["cat"]
    page = client.get(
        reverse("labeling:image-tag", args=[project.id, a.image_id])
        + f"?review={a.image_id},{b.image_id}"
    )
    html = page.content.decode()
    # No auto-advance in review, ← / → walk the queue, and the prediction is dismissed, not deleted.
    assert 'data-testid="auto-advance"' not in html
    assert 'data-testid="delete-image"' not in html
    assert f'/images/{b.image_id}/?review={a.image_id},{b.image_id}" hx-get' in html


def test_a_duplicate_of_a_training_image_is_reported_not_stored(
    client_for, project, users, iteration
):
    prediction = crafted_prediction(project, iteration, [0.45, 0.55])
    client = client_for(users["reviewer"])
    review(client, project, prediction.image_id)
    original = Image.objects.get(pk=prediction.image_id)
    from tests.factories import ImageFactory

    with original.file.open("rb") as handle:
        existing = ImageFactory(project=project, content=handle.read())
    response = save_and_close(client, project, prediction.image_id)
    assert response.status_code == 302
    page = client.get(response.url)
    assert f"already in the training data (image {existing.pk})" in page.content.decode()
    assert not Image.objects.get(pk=prediction.image_id).is_training
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.OPEN


def test_untagged_prediction_cannot_be_saved(client_for, project, users, iteration):
    prediction = crafted_prediction(project, iteration, [0.45, 0.55])
    client = client_for(users["reviewer"])
    response = save_and_close(client, project, prediction.image_id)  # never opened: no tags
    page = client.get(response.url)
    assert "Choose at least one tag" in page.content.decode()
    assert not Image.objects.get(pk=prediction.image_id).is_training


def test_dismiss_removes_from_the_tab_without_training(client_for, project, users, iteration):
    keep = crafted_prediction(project, iteration, [0.5, 0.5])
    drop = crafted_prediction(project, iteration, [0.52, 0.48])
    client = client_for(users["reviewer"])
    response = client.post(
        reverse("predictions:prediction-dismiss", args=[project.id]),
        {"image_ids": [str(drop.image_id)]},
    )
    assert response.status_code == 302
    assert shown_ids(tab(client, project)) == [keep.image_id]
    drop.refresh_from_db()
    assert drop.status == Prediction.Status.DISMISSED
    assert not Image.objects.get(pk=drop.image_id).is_training
    assert save_and_close(client, project, drop.image_id).status_code == 302
    assert not Image.objects.get(pk=drop.image_id).is_training


def test_annotators_cannot_triage(client_for, project, users, iteration):
    prediction = crafted_prediction(project, iteration, [0.5, 0.5])
    client = client_for(users["annotator"])
    assert review(client, project, prediction.image_id).status_code == 403
    assert save_and_close(client, project, prediction.image_id).status_code == 403
