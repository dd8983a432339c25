"""The REST API's suggestions, quick test and prediction keys, against a really trained model."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Image, ImageTag
from predictions.models import Prediction, PredictionKey
from predictions.tasks import suggest_tags
from tests.factories import ImageFactory
from tests.predictions.conftest import BLUE, RED, colour_png

pytestmark = pytest.mark.django_db


def api(project, path: str) -> str:
    return f"/api/projects/{project.pk}/{path}"


# --- Suggestions -----------------------------------------------------------------------------


def test_suggest_list_and_accept_through_the_api(api_client, users, trained):
    from training.services.publishing import make_default_iteration

    project = trained.project
    red, _, blue = trained.tags
    make_default_iteration(iteration=trained.iteration, by=trained.admin)
    reddish = ImageFactory(project=project, content=colour_png(RED), width=40, height=40)
    bluish = ImageFactory(project=project, content=colour_png(BLUE), width=40, height=40)
    api_client.force_authenticate(users["annotator"])
    assert api_client.post(api(project, "suggestions/")).status_code == 403
    api_client.force_authenticate(users["reviewer"])
    started = api_client.post(api(project, "suggestions/"))
    assert started.status_code == 202, started.content
    assert started.json()["is_running"] is True and started.json()["without"] == 2
    assert suggest_tags(project.pk) == 2  # the worker's batch, called directly
    status = api_client.get(api(project, "suggestions/status/")).json()
    assert (status["is_running"], status["waiting"], status["without"]) == (False, 2, 0)

    api_client.force_authenticate(users["annotator"])
    listed = api_client.get(api(project, "suggestions/")).json()
    assert listed["count"] == 2
    by_image = {row["image_id"]: row for row in listed["results"]}
    assert by_image[reddish.pk]["tags"][0]["tagName"] == "red"
    assert by_image[bluish.pk]["tags"][0]["tagName"] == "blue"
    assert 0 < by_image[reddish.pk]["confidence"] <= 1
    accepted = api_client.post(
        api(project, f"images/{reddish.pk}/suggestion/accept/"),
        {"version": reddish.version},
        format="json",
    )
    assert accepted.status_code == 200, accepted.content
    assert [tag["name"] for tag in accepted.json()["tags"]] == ["red"]
    assert list(ImageTag.objects.filter(image=reddish).values_list("tag_id", flat=True)) == [red.pk]
    again = api_client.post(api(project, f"images/{reddish.pk}/suggestion/accept/"), {})
    assert again.status_code == 422  # nothing waiting any more

    api_client.force_authenticate(users["reviewer"])
    bad = api_client.post(api(project, "suggestions/accept/"), {"min_confidence": 2}, "json")
    assert bad.status_code == 422
    report = api_client.post(api(project, "suggestions/accept/"), {"min_confidence": 0}, "json")
    assert report.json() == {"accepted": 1, "skipped": 0}
    assert list(ImageTag.objects.filter(image=bluish).values_list("tag_id", flat=True)) == [blue.pk]


def test_suggestions_need_a_trained_iteration(api_client, project, users):
    api_client.force_authenticate(users["admin"])
    answer = api_client.post(api(project, "suggestions/"))
    assert answer.status_code == 422 and "Train one first" in answer.json()["message"]


# --- Quick test ------------------------------------------------------------------------------


def png(colour) -> SimpleUploadedFile:
    return SimpleUploadedFile("test.png", colour_png(colour), content_type="image/png")


def test_quick_test_predicts_and_stores_for_reviewers_only(api_client, users, trained):
    project, iteration = trained.project, trained.iteration
    url = api(project, "quick-test/")
    api_client.force_authenticate(users["annotator"])
    answer = api_client.post(url, {"iteration_id": iteration.pk, "image": png(RED)})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["predictions"][0]["tagName"] == "red" and body["prediction_id"] is None
    assert body["name"] == "test.png" and not Prediction.objects.exists()
    stored = api_client.post(url, {"iteration_id": iteration.pk, "image": png(RED), "store": True})
    assert stored.status_code == 403 and not Prediction.objects.exists()

    api_client.force_authenticate(users["reviewer"])
    stored = api_client.post(url, {"iteration_id": iteration.pk, "image": png(BLUE), "store": True})
    assert stored.status_code == 200, stored.content
    prediction = Prediction.objects.get(pk=stored.json()["prediction_id"])
    assert prediction.image_id == stored.json()["image_id"]
    assert not Image.objects.get(pk=prediction.image_id).is_training
    listed = api_client.get(api(project, f"iterations/{iteration.pk}/predictions/")).json()
    assert [row["image_id"] for row in listed["results"]] == [prediction.image_id]


def test_quick_test_refuses_bad_input_with_coded_errors(api_client, users, trained):
    project, iteration = trained.project, trained.iteration
    url = api(project, "quick-test/")
    api_client.force_authenticate(users["annotator"])
    neither = api_client.post(url, {"iteration_id": iteration.pk})
    assert neither.status_code == 400 and neither.json()["code"] == "invalid"
    not_image = SimpleUploadedFile("a.png", b"text", content_type="image/png")
    broken = api_client.post(url, {"iteration_id": iteration.pk, "image": not_image})
    assert broken.status_code == 400 and broken.json()["message"].endswith(".")
    private = api_client.post(
        url, {"iteration_id": iteration.pk, "url": "http://127.0.0.1/a.png"}, format="json"
    )
    assert private.status_code == 400 and private.json()["code"] == "BadRequestImageUrl"
    unknown = api_client.post(url, {"iteration_id": 2**40, "image": png(RED)})
    assert unknown.status_code == 404


# --- Prediction keys ---------------------------------------------------------------------------


def predict(client, trained, secret: str):
    return client.post(
        trained.url(),
        colour_png(RED),
        content_type="application/octet-stream",
        HTTP_PREDICTION_KEY=secret,
    )


def test_keys_are_made_shown_once_rotated_and_revoked(api_client, client, users, trained):
    project = trained.project
    api_client.force_authenticate(users["admin"])
    made = api_client.post(api(project, "prediction-keys/"), {"name": "Mobile app"}, "json")
    assert made.status_code == 201, made.content
    key_id, secret = made.json()["id"], made.json()["secret"]
    assert secret.startswith(made.json()["prefix"])
    assert predict(client, trained, secret).status_code == 200
    listed = api_client.get(api(project, "prediction-keys/")).json()
    assert {row["name"] for row in listed["results"]} == {"Mobile app", "tests"}
    # Shown once, in the answer that made it: the list has neither the field nor the value.
    assert all("secret" not in row for row in listed["results"]) and secret not in str(listed)

    rotated = api_client.post(api(project, f"prediction-keys/{key_id}/rotate/"))
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    assert predict(client, trained, secret).status_code == 401
    assert predict(client, trained, new_secret).status_code == 200

    revoked = api_client.delete(api(project, f"prediction-keys/{key_id}/"))
    assert revoked.status_code == 200 and revoked.json()["is_revoked"] is True
    assert predict(client, trained, new_secret).status_code == 401
    again = api_client.post(api(project, f"prediction-keys/{key_id}/rotate/"))
    assert again.status_code == 422
    assert api_client.delete(api(project, "prediction-keys/999999/")).status_code == 404
    empty = api_client.post(api(project, "prediction-keys/"), {"name": "  "}, "json")
    assert empty.status_code in (400, 422) and PredictionKey.objects.count() == 2


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_keys_are_for_admins(api_client, users, trained, role):
    api_client.force_authenticate(users[role])
    assert api_client.get(api(trained.project, "prediction-keys/")).status_code == 403
    made = api_client.post(api(trained.project, "prediction-keys/"), {"name": "x"}, "json")
    assert made.status_code == 403 and PredictionKey.objects.count() == 1


# --- Lists cost the same queries for one row or a page of them -----------------------------------


def count_queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_suggestion_and_key_lists_cost_the_same_queries_for_more_rows(api_client, users, trained):
    from predictions.models import Suggestion
    from predictions.services.keys import create_key

    project, iteration = trained.project, trained.iteration
    red = trained.tags[0]

    def suggest() -> None:
        image = ImageFactory(project=project)
        row = {"tagId": red.pk, "tagName": "red", "probability": 0.7}
        Suggestion.objects.create(image=image, iteration=iteration, tags=[row])

    api_client.force_authenticate(users["admin"])
    suggest()
    one_suggestion = count_queries(api_client, api(project, "suggestions/"))
    one_key = count_queries(api_client, api(project, "prediction-keys/"))
    for _ in range(6):
        suggest()
        create_key(project=project, name="more", by=users["admin"])
    assert count_queries(api_client, api(project, "suggestions/")) == one_suggestion
    assert count_queries(api_client, api(project, "prediction-keys/")) == one_key
