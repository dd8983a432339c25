"""The REST API's triage of stored predictions: promote with tags or boxes (once); dismiss."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from labeling.models import Image, ImageTag, Project, Region
from predictions.models import Prediction
from tests.factories import ImageFactory, TagFactory
from tests.predictions.helpers import crafted_prediction
from tests.training.conftest import make_iteration
from tests.training.detection_data import make_detection_iteration

pytestmark = pytest.mark.django_db


@pytest.fixture
def iteration(project):
    cat, dog = TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")
    iteration = make_iteration(project, tags=("cat", "dog"))
    for it_tag, tag in zip(iteration.tags.order_by("index"), (cat, dog), strict=True):
        it_tag.tag = tag
        it_tag.save(update_fields=["tag"])
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    return iteration


def promote(client, project, image_id, body=None):
    url = f"/api/projects/{project.pk}/predictions/{image_id}/promote/"
    return client.post(url, body or {}, format="json")


def open_ids(client, project, iteration) -> list[int]:
    url = f"/api/projects/{project.pk}/iterations/{iteration.pk}/predictions/"
    return [row["image_id"] for row in client.get(url, {"sort": "newest"}).json()["results"]]


def test_promote_with_tags_moves_it_into_training_exactly_once(
    api_client, project, users, iteration
):
    dog = project.tags.get(name="dog")
    prediction = crafted_prediction(project, iteration, [0.8, 0.2])
    api_client.force_authenticate(users["reviewer"])
    assert open_ids(api_client, project, iteration) == [prediction.image_id]
    answer = promote(api_client, project, prediction.image_id, {"tag_ids": [dog.pk]})
    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "image_id": prediction.image_id,
        "status": "promoted",
        "already_done": False,
    }
    image = Image.objects.get(pk=prediction.image_id)
    assert image.is_training and image.is_tagged
    assert list(ImageTag.objects.filter(image=image).values_list("tag_id", flat=True)) == [dog.pk]
    assert Prediction.objects.get(pk=prediction.pk).reviewed_by == users["reviewer"]
    assert open_ids(api_client, project, iteration) == []
    again = promote(api_client, project, prediction.image_id, {"tag_ids": [dog.pk]})
    assert again.status_code == 200 and again.json()["already_done"] is True


def test_promote_follows_the_labeling_rules(api_client, project, users, iteration):
    cat, dog = project.tags.get(name="cat"), project.tags.get(name="dog")
    prediction = crafted_prediction(project, iteration, [0.6, 0.4])
    api_client.force_authenticate(users["admin"])
    untagged = promote(api_client, project, prediction.image_id)
    assert untagged.status_code == 422 and "at least one tag" in untagged.json()["message"]
    # Multiclass: one tag per image, the labeling service's rule.
    two = promote(api_client, project, prediction.image_id, {"tag_ids": [cat.pk, dog.pk]})
    assert two.status_code == 422 and two.json()["code"] == "label_rule"
    boxes = promote(
        api_client,
        project,
        prediction.image_id,
        {"regions": [{"tag_id": cat.pk, "left": 0, "top": 0, "width": 0.5, "height": 0.5}]},
    )
    assert boxes.status_code == 422 and "detection" in boxes.json()["message"]
    assert not Image.objects.get(pk=prediction.image_id).is_training
    assert Prediction.objects.get(pk=prediction.pk).status == "open"
    training = ImageFactory(project=project)
    assert promote(api_client, project, training.pk).status_code == 404
    api_client.force_authenticate(users["annotator"])
    assert (
        promote(api_client, project, prediction.image_id, {"tag_ids": [cat.pk]}).status_code == 403
    )


def test_promote_a_detection_prediction_with_boxes(api_client, project, users):
    project.kind = Project.Kind.DETECTION
    project.save(update_fields=["kind"])
    cat = TagFactory(project=project, name="cat")
    iteration = make_detection_iteration(project, tags=["cat"], rows=[])
    image = ImageFactory(
        project=project,
        source=Image.Source.PREDICTION,
        is_training=False,
        width=40,
        height=30,
    )
    Prediction.objects.create(project=project, iteration=iteration, image=image)
    api_client.force_authenticate(users["reviewer"])
    box = {"tag_id": cat.pk, "left": 0.25, "top": 0.1, "width": 0.5, "height": 0.6}
    answer = promote(api_client, project, image.pk, {"regions": [box]})
    assert answer.status_code == 200, answer.content
    region = Region.objects.get(image=image)
    assert (region.tag_id, region.left, region.top, region.width, region.height) == (
        cat.pk,
        0.25,
        0.1,
        0.5,
        0.6,
    )
    image.refresh_from_db()
    assert image.is_training and image.is_tagged


def test_dismiss_takes_them_off_the_list_and_they_cannot_be_promoted(
    api_client, project, users, iteration
):
    cat = project.tags.get(name="cat")
    kept = crafted_prediction(project, iteration, [0.9, 0.1])
    gone = [crafted_prediction(project, iteration, [0.5, 0.5]) for _ in range(2)]
    api_client.force_authenticate(users["reviewer"])
    url = f"/api/projects/{project.pk}/predictions/dismiss/"
    answer = api_client.post(url, {"image_ids": [p.image_id for p in gone]}, format="json")
    assert answer.status_code == 200 and answer.json() == {"count": 2}
    assert open_ids(api_client, project, iteration) == [kept.image_id]
    assert set(Prediction.objects.filter(status="dismissed").values_list("pk", flat=True)) == {
        p.pk for p in gone
    }
    refused = promote(api_client, project, gone[0].image_id, {"tag_ids": [cat.pk]})
    assert refused.status_code == 422 and "dismissed" in refused.json()["message"]
    assert api_client.post(url, {"image_ids": []}, format="json").status_code == 400
    assert api_client.post(url, {"image_ids": ["x"]}, format="json").status_code == 400
    api_client.force_authenticate(users["annotator"])
    assert api_client.post(url, {"image_ids": [kept.image_id]}, format="json").status_code == 403
    assert Prediction.objects.get(pk=kept.pk).status == "open"
