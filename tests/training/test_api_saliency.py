"""Where the model looked and context reliance over the API: POST asks a worker (202 with the
job's state), the task runs here directly as a worker would, GET reads the result (and the
overlay PNG); the same roles as the pages; bad ids and bodies in the {"code", "message"} shape."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from labeling.models import Image, Role
from predictions.models import Prediction
from tests.factories import ImageTagFactory, ProjectFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration  # noqa: F401
from tests.streaming import body_of
from tests.training.test_where_looked import GREEN, RED, _red_image
from training.models import IterationImage
from training.services.saliency import folder, keep_upload
from training.tasks_saliency import explain_prediction, measure_context_reliance

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(project, colour_artifact):  # noqa: F811
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    return colour_iteration(project, tags, colour_artifact)


def _looked(project_id: int, iteration_id: int) -> str:
    return f"/api/projects/{project_id}/iterations/{iteration_id}/where-looked/"


def _reliance(project_id: int, iteration_id: int) -> str:
    return f"/api/projects/{project_id}/iterations/{iteration_id}/context-reliance/"


def test_a_member_asks_the_worker_computes_and_the_result_and_overlay_follow(
    project, users, client_for, trained
) -> None:
    image = _red_image(project)
    client = client_for(users[str(Role.ANNOTATOR)])
    url = _looked(project.pk, trained.pk)
    before = client.get(url, {"image_id": image.pk})
    assert before.status_code == 200
    assert before.json()["status"] == "" and before.json()["overlay_url"] is None

    asked = client.post(url, {"image_id": image.pk}, content_type="application/json")
    assert asked.status_code == 202
    assert asked.json()["status"] == "queued" and asked.json()["image_id"] == image.pk

    assert explain_prediction(trained.pk, f"i{image.pk}") == "done"
    body = client.get(url, {"image_id": image.pk}).json()
    assert body["status"] == "done" and body["tag_name"] == "red"
    assert body["probability"] > 0.5 and body["box"] is None and body["upload"] is None
    overlay = client.get(body["overlay_url"])
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/png"
    png = PILImage.open(io.BytesIO(body_of(overlay)))
    assert png.mode == "RGBA" and png.size == (60, 40)  # the image's own shape

    again = client.post(url, {"image_id": image.pk}, content_type="application/json")
    assert again.status_code == 202 and again.json()["status"] == "done"  # nothing re-queued


def test_a_quick_test_upload_is_explained_by_its_sha256(project, users, client_for, trained):
    from tests.conftest import make_image

    digest = keep_upload(iteration_id=trained.pk, data=make_image(48, 48, RED))
    client = client_for(users[str(Role.ANNOTATOR)])
    url = _looked(project.pk, trained.pk)
    asked = client.post(url, {"upload": digest}, content_type="application/json")
    assert asked.status_code == 202 and asked.json()["upload"] == digest
    assert explain_prediction(trained.pk, f"u{digest}") == "done"
    body = client.get(url, {"upload": digest}).json()
    assert body["tag_name"] == "red" and body["image_id"] is None
    assert client.get(body["overlay_url"]).status_code == 200
    assert client_for(users["non_member"]).get(url, {"upload": digest}).status_code == 404


def test_a_stored_prediction_needs_the_reviewer_role(project, users, client_for, trained):
    image = _red_image(project)
    Image.objects.filter(pk=image.pk).update(source=Image.Source.PREDICTION, is_training=False)
    Prediction.objects.create(project=project, iteration=trained, image=image)
    url = _looked(project.pk, trained.pk)
    body = {"image_id": image.pk}
    refused = client_for(users[str(Role.ANNOTATOR)]).post(url, body, "application/json")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert not default_storage.exists(f"{folder(trained)}/i{image.pk}.json")
    allowed = client_for(users[str(Role.REVIEWER)]).post(url, body, "application/json")
    assert allowed.status_code == 202


@pytest.mark.parametrize(
    ("iteration", "query", "status"),
    [
        ("999999", {"image_id": "{image}"}, 404),
        ("{iteration}", {"image_id": "999999"}, 404),
        ("{iteration}", {"image_id": "{other}"}, 404),  # another project's image
        ("{iteration}", {"upload": "a" * 64}, 404),
        ("{iteration}", {"upload": "../../etc/passwd"}, 404),
        ("{iteration}", {"image_id": "abc"}, 400),
        ("{iteration}", {"image_id": "1e9"}, 400),
        ("{iteration}", {}, 400),
        ("{iteration}", {"image_id": "{image}", "upload": "a" * 64}, 400),
    ],
)
def test_bad_ids_are_404_or_400_in_the_error_shape(
    project, users, client_for, trained, iteration, query, status
) -> None:
    image, other = _red_image(project), _red_image(ProjectFactory())
    ids = {"image": image.pk, "other": other.pk, "iteration": trained.pk}
    values = {k: v.format(**ids) for k, v in query.items()}
    url = _looked(project.pk, int(iteration.format(**ids)))
    client = client_for(users[str(Role.ADMIN)])
    for response in (
        client.get(url, values),
        client.post(url, values, content_type="application/json"),
        client.get(url + "overlay/", values),
    ):
        assert response.status_code == status
        assert {"code", "message"} <= set(response.json())
    assert not default_storage.exists(f"{folder(trained)}/i{image.pk}.json")


def test_an_overlay_not_computed_yet_is_404(project, users, client_for, trained) -> None:
    image = _red_image(project)
    response = client_for(users[str(Role.ANNOTATOR)]).get(
        _looked(project.pk, trained.pk) + "overlay/", {"image_id": image.pk}
    )
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_context_reliance_is_asked_measured_by_the_worker_and_read(
    project, users, client_for, trained
) -> None:
    for colour, index in ((RED, 0), (GREEN, 1)):
        for n in range(2):
            image = _red_image(project, colour=colour, size=(40 + n, 40))
            ImageTagFactory(image=image, tag=project.tags.get(name=("red", "green")[index]))
            IterationImage.objects.create(
                iteration=trained,
                image=image,
                sha256=image.sha256,
                file_name=image.file.name,
                labels=[index],
            )
    client = client_for(users[str(Role.ANNOTATOR)])
    url = _reliance(project.pk, trained.pk)
    before = client.get(url).json()
    assert before["status"] == "" and before["tags"] == [] and before["images_per_tag"] > 0
    asked = client.post(url)
    assert asked.status_code == 202 and asked.json()["status"] == "queued"
    assert client.post(url).json()["status"] == "queued"  # asked twice: still the one job

    assert measure_context_reliance(trained.pk) == "done"
    body = client.get(url).json()
    assert body["status"] == "done" and body["iteration_id"] == trained.pk
    rows = body["tags"]
    assert [row["tag"] for row in rows] == ["red", "green", "blue"]
    assert [row["images"] for row in rows] == [2, 2, 0]
    assert all(0.0 <= row["survives"] <= 1.0 for row in rows[:2])
    assert "survives" not in rows[2]  # nothing measured for blue: only its name and count


def test_context_reliance_refuses_outsiders_and_bad_ids_in_the_error_shape(
    project, users, client_for, trained
) -> None:
    url = _reliance(project.pk, trained.pk)
    hidden = client_for(users["non_member"]).post(url)
    assert hidden.status_code == 404 and set(hidden.json()) == {"code", "message"}
    assert client_for(None).get(url).status_code == 401
    client = client_for(users[str(Role.ADMIN)])
    for bad in (_reliance(project.pk, 999999), _reliance(987654, trained.pk)):
        for response in (client.get(bad), client.post(bad)):
            assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert client.get(url).json()["status"] == ""  # nothing was queued
