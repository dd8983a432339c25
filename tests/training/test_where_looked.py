"""Where the model looked over HTTP: ask for a heat map, the worker task computes it (called
directly, as a worker would), the partial and the overlay PNG follow; bad ids are 404s, bad
input ends the job "failed" with a reason; context reliance the same way."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage

from labeling.models import Image
from predictions.models import Prediction
from tests.factories import ImageFactory, ImageTagFactory, ProjectFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration, colour_png  # noqa: F401
from tests.robustness.conftest import broker_down  # noqa: F401
from tests.streaming import body_of
from training.services.saliency import folder
from training.tasks_saliency import explain_prediction, measure_context_reliance

pytestmark = pytest.mark.django_db

RED, GREEN = (220, 30, 30), (30, 200, 40)


@pytest.fixture
def trained(project, colour_artifact):  # noqa: F811
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    return colour_iteration(project, tags, colour_artifact)


def _red_image(project, colour=RED, size=(60, 40)):
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, format="PNG")
    return ImageFactory(
        project=project, width=size[0], height=size[1], file=ContentFile(buffer.getvalue(), "r.png")
    )


def _url(project, **query):
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return reverse("training:where-looked", args=[project.pk]) + "?" + text


def _status(iteration, key):
    with default_storage.open(f"{folder(iteration)}/{key}.json") as handle:
        return json.loads(handle.read())


def test_a_member_asks_the_worker_computes_and_the_overlay_follows(
    project, users, client_for, trained
):
    image = _red_image(project)
    client = client_for(users["annotator"])
    url = _url(project, iteration=trained.pk, image=image.pk)

    asked = client.post(url, {"target": "#stage-image"}, headers={"HX-Request": "true"})
    assert asked.status_code == 200
    assert b'data-testid="where-looked-busy"' in asked.content
    assert _status(trained, f"i{image.pk}")["status"] == "queued"

    assert explain_prediction(trained.pk, f"i{image.pk}") == "done"
    stored = _status(trained, f"i{image.pk}")
    assert stored["status"] == "done" and stored["tag"] == "red" and stored["probability"] > 0.5

    shown = client.get(url, headers={"HX-Request": "true"})
    assert b'data-testid="where-looked-toggle"' in shown.content
    assert b"model predicts <strong>red</strong>" in shown.content
    overlay = client.get(
        reverse("training:where-looked-overlay", args=[project.pk])
        + f"?iteration={trained.pk}&image={image.pk}"
    )
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/png"
    png = PILImage.open(io.BytesIO(body_of(overlay)))
    assert png.mode == "RGBA" and png.size == (60, 40)  # the image's own shape

    # Asking again reuses the stored map: nothing is queued.
    again = client.post(url, headers={"HX-Request": "true"})
    assert b'data-testid="where-looked-toggle"' in again.content


def test_without_javascript_the_post_redirects_to_a_page_with_the_image(
    project, users, client_for, trained
):
    image = _red_image(project)
    client = client_for(users["reviewer"])
    response = client.post(_url(project, iteration=trained.pk, image=image.pk))
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b'id="where-looked-image"' in page.content
    assert b"Computing where the model looked" in page.content


@pytest.mark.parametrize(
    "query",
    [
        {"iteration": "999999", "image": "{image}"},
        {"iteration": "{iteration}", "image": "999999"},
        {"iteration": "abc", "image": "{image}"},
        {"iteration": "{iteration}", "image": "1e9"},
        {"iteration": "{iteration}"},
        {"iteration": "{iteration}", "upload": "../../etc/passwd"},
        {"iteration": "{iteration}", "upload": "a" * 64},
    ],
)
def test_bad_ids_are_404_never_500(project, users, client_for, trained, query):
    image = _red_image(project)
    values = {k: v.format(image=image.pk, iteration=trained.pk) for k, v in query.items()}
    client = client_for(users["admin"])
    assert client.get(_url(project, **values)).status_code == 404
    assert client.post(_url(project, **values)).status_code == 404
    overlay = reverse("training:where-looked-overlay", args=[project.pk])
    assert client.get(overlay, values).status_code == 404


def test_an_image_of_another_project_and_a_map_not_computed_are_404(
    project, users, client_for, trained
):
    other = _red_image(ProjectFactory())
    client = client_for(users["admin"])
    assert client.post(_url(project, iteration=trained.pk, image=other.pk)).status_code == 404
    mine = _red_image(project)
    overlay = reverse("training:where-looked-overlay", args=[project.pk])
    assert client.get(overlay, {"iteration": trained.pk, "image": mine.pk}).status_code == 404


def test_a_stored_prediction_needs_the_reviewer_role(project, users, client_for, trained):
    image = _red_image(project)
    Image.objects.filter(pk=image.pk).update(source=Image.Source.PREDICTION, is_training=False)
    Prediction.objects.create(project=project, iteration=trained, image=image)
    url = _url(project, iteration=trained.pk, image=image.pk)
    assert client_for(users["annotator"]).post(url).status_code == 403
    assert not default_storage.exists(f"{folder(trained)}/i{image.pk}.json")
    assert client_for(users["reviewer"]).post(url).status_code == 302


@pytest.fixture(scope="module")
def detector_bytes():
    """Lite0 FCOS detectors (the production build, 96 px) whose heads are set, not trained:
    "sure" finds tag 0 (red) everywhere with boxes 4x its anchors, "blind" finds nothing."""
    from training.ml.detection import (
        DetectorArtifact,
        DetectorConfig,
        build_detector,
        save_detector_artifact,
    )

    config = DetectorConfig(image_size_px=96, max_size_px=128, train_scales=(1.0,))
    state = build_detector("lite0", 3, config).state_dict()
    made = {}
    for name, red_bias in (("sure", 4.0), ("blind", -12.0)):
        weights = {key: value.clone() for key, value in state.items()}
        bias = weights["head.classification_head.cls_logits.bias"]
        bias[:] = -12.0
        bias[0] = red_bias
        weights["head.regression_head.bbox_reg.bias"][:] = 2.0
        buffer = io.BytesIO()
        save_detector_artifact(DetectorArtifact("lite0", 3, config, weights), buffer)
        made[name] = buffer.getvalue()
    return made


def _detection_iteration(users, artifact: bytes):
    project = ProjectFactory(kind="detection")
    project.memberships.create(user=users["admin"], role="admin")
    project.memberships.create(user=users["annotator"], role="annotator")
    tags = [TagFactory(project=project, name=n) for n in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, artifact)
    iteration.backbone = "lite0"
    iteration.save(update_fields=["backbone"])
    return project, iteration


def test_a_detector_explains_its_top_box_over_http(users, client_for, detector_bytes):
    project, iteration = _detection_iteration(users, detector_bytes["sure"])
    image = _red_image(project, size=(120, 90))
    client = client_for(users["annotator"])
    url = _url(project, iteration=iteration.pk, image=image.pk)

    asked = client.post(url, {"target": "#stage-image"}, headers={"HX-Request": "true"})
    assert asked.status_code == 200 and b'data-testid="where-looked-busy"' in asked.content
    assert _status(iteration, f"i{image.pk}")["status"] == "queued"

    assert explain_prediction(iteration.pk, f"i{image.pk}") == "done"
    stored = _status(iteration, f"i{image.pk}")
    assert stored["status"] == "done" and stored["tag"] == "red"
    assert 0.5 < stored["probability"] <= 1.0
    left, top, width, height = stored["box"]
    assert left >= 0 and top >= 0 and width > 0 and height > 0
    assert left + width <= 1 + 1e-6 and top + height <= 1 + 1e-6

    shown = client.get(url, headers={"HX-Request": "true"})
    assert b'data-testid="where-looked-toggle"' in shown.content
    assert b"for its top box (outlined in white)" in shown.content
    overlay = client.get(
        reverse("training:where-looked-overlay", args=[project.pk])
        + f"?iteration={iteration.pk}&image={image.pk}"
    )
    assert overlay.status_code == 200 and overlay["Content-Type"] == "image/png"
    png = PILImage.open(io.BytesIO(body_of(overlay)))
    assert png.mode == "RGBA" and png.size == (120, 90)  # the whole image: no unseen strips
    assert (png.getchannel("A").getextrema()[1]) > 0  # something is coloured


def test_a_detector_that_finds_no_box_ends_the_job_failed_with_a_reason(
    users, client_for, detector_bytes
):
    project, iteration = _detection_iteration(users, detector_bytes["blind"])
    image = _red_image(project)
    client = client_for(users["annotator"])
    url = _url(project, iteration=iteration.pk, image=image.pk)
    client.post(url, headers={"HX-Request": "true"})
    assert explain_prediction(iteration.pk, f"i{image.pk}") == "failed"
    assert _status(iteration, f"i{image.pk}")["message"] == (
        "The model finds no box in this image: there is no box to explain."
    )
    assert b"no box to explain" in client.get(url, headers={"HX-Request": "true"}).content


def test_a_detection_quick_test_and_box_context_reliance_work_through_the_worker(
    users, client_for, detector_bytes
):
    from training.models import IterationImage

    project, iteration = _detection_iteration(users, detector_bytes["sure"])
    client = client_for(users["annotator"])
    upload = io.BytesIO(colour_png(RED, 64))
    upload.name = "red.png"
    tested = client.post(
        reverse("predictions:quick-test", args=[project.pk]),
        {"iteration": iteration.pk, "image": upload},
    )
    assert tested.status_code == 200
    assert b'data-testid="where-looked-run"' in tested.content
    digest = tested.context["where_looked_upload"]
    url = _url(project, iteration=iteration.pk, upload=digest)
    client.post(url, headers={"HX-Request": "true"})
    assert explain_prediction(iteration.pk, f"u{digest}") == "done"
    assert b"for its top box" in client.get(url, headers={"HX-Request": "true"}).content

    # Box-based context reliance: the labelled boxes are masked, the tag scored by its best box.
    for n in range(2):
        image = _red_image(project, size=(64 + n, 48))
        IterationImage.objects.create(
            iteration=iteration,
            image=image,
            sha256=image.sha256,
            file_name=image.file.name,
            labels=[0],
            boxes=[[0, 0.25, 0.25, 0.5, 0.5]],
        )
    assert measure_context_reliance(iteration.pk) == "done"
    page = client.get(reverse("training:context-reliance", args=[project.pk, iteration.pk]))
    rows = page.context["state"]["tags"]
    assert [row["tag"] for row in rows] == ["red", "green", "blue"]
    assert [row["images"] for row in rows] == [2, 0, 0]
    # This head ignores the pixels (a bias says red everywhere): masking the box changes
    # nothing, so the tag is flagged as not relying on its object.
    assert rows[0]["flagged"] is True and rows[0]["survives"] == 1.0


def test_an_unreadable_image_ends_the_job_failed_with_a_reason(project, users, client_for, trained):
    image = ImageFactory(project=project, file=ContentFile(b"not a picture", "broken.png"))
    client = client_for(users["annotator"])
    url = _url(project, iteration=trained.pk, image=image.pk)
    client.post(url, headers={"HX-Request": "true"})
    assert explain_prediction(trained.pk, f"i{image.pk}") == "failed"
    assert _status(trained, f"i{image.pk}") | {"at": 0} == {
        "status": "failed",
        "at": 0,
        "message": "The image could not be read as a picture.",
    }
    shown = client.get(url, headers={"HX-Request": "true"})
    assert b"could not be read as a picture" in shown.content
    assert b"Try again" in shown.content
    # Asking again queues it again (a failed job is not final).
    client.post(url, headers={"HX-Request": "true"})
    assert _status(trained, f"i{image.pk}")["status"] == "queued"


def test_a_deleted_image_or_a_bad_key_ends_the_job_failed(project, trained):
    image = _red_image(project)
    key = f"i{image.pk}"
    image.delete()
    assert explain_prediction(trained.pk, key) == "failed"
    assert _status(trained, key)["message"] == "The image was deleted."
    assert explain_prediction(trained.pk, "x123") == "failed"
    assert explain_prediction(999999, key) == "failed"  # the iteration is gone: nothing to do


def test_quick_test_offers_the_heat_map_of_the_tested_image(project, users, client_for, trained):
    client = client_for(users["annotator"])
    upload = io.BytesIO(colour_png(RED, 48))
    upload.name = "red.png"
    tested = client.post(
        reverse("predictions:quick-test", args=[project.pk]),
        {"iteration": trained.pk, "image": upload},
    )
    assert tested.status_code == 200
    assert b'data-testid="where-looked-run"' in tested.content
    digest = tested.context["where_looked_upload"]
    url = _url(project, iteration=trained.pk, upload=digest)
    client.post(url, headers={"HX-Request": "true"})
    assert explain_prediction(trained.pk, f"u{digest}") == "done"
    assert (
        b"model predicts <strong>red</strong>"
        in client.get(url, headers={"HX-Request": "true"}).content
    )
    # Another project's member cannot reach it.
    assert client_for(users["non_member"]).get(url).status_code == 404


def test_context_reliance_is_measured_by_the_worker_and_shown(project, users, client_for, trained):
    from training.models import IterationImage

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
    client = client_for(users["annotator"])
    url = reverse("training:context-reliance", args=[project.pk, trained.pk])
    assert b"Not measured yet" in client.get(url).content
    assert client.post(url).status_code == 302
    assert b'data-testid="reliance-status"' in client.get(url).content
    assert measure_context_reliance(trained.pk) == "done"
    page = client.get(url)
    rows = page.context["state"]["tags"]
    # Every tag has a line; blue has no image in the snapshot, so nothing was measured.
    assert [row["tag"] for row in rows] == ["red", "green", "blue"]
    assert [row["images"] for row in rows] == [2, 2, 0]
    assert all(0.0 <= row["survives"] <= 1.0 for row in rows[:2])
    assert b"No image to measure" in page.content
    assert b'data-testid="reliance-row"' in page.content
    assert b"Method and limits" in page.content
    # Bad ids: 404, never 500.
    assert (
        client.get(reverse("training:context-reliance", args=[project.pk, 999999])).status_code
        == 404
    )


def test_with_the_broker_down_the_job_fails_at_once_with_a_reason(
    project,
    users,
    client_for,
    trained,
    broker_down,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    image = _red_image(project)
    client = client_for(users["annotator"])
    url = _url(project, iteration=trained.pk, image=image.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert _status(trained, f"i{image.pk}")["status"] == "failed"
    shown = client.get(url, headers={"HX-Request": "true"})
    assert b"The job queue is unavailable" in shown.content
    context_url = reverse("training:context-reliance", args=[project.pk, trained.pk])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(context_url)
    assert b"The job queue is unavailable" in client.get(context_url).content


def test_a_job_whose_worker_died_reads_as_failed_and_is_queued_again(
    project, users, client_for, trained
):
    from project.storage import replace_file

    image = _red_image(project)
    key = f"i{image.pk}"
    lost = {"status": "running", "at": 1.0}  # long ago: past the time limit
    replace_file(f"{folder(trained)}/{key}.json", json.dumps(lost).encode())
    client = client_for(users["annotator"])
    url = _url(project, iteration=trained.pk, image=image.pk)
    shown = client.get(url, headers={"HX-Request": "true"})
    assert b"did not finish" in shown.content and b"Try again" in shown.content
    client.post(url, headers={"HX-Request": "true"})
    assert _status(trained, key)["status"] == "queued"


def test_the_box_editors_mispredicted_walk_offers_the_map_over_its_svg_image(
    project, users, client_for, detector_bytes
):
    from django.core.files.base import ContentFile as Bytes

    from labeling.models import Project
    from tests.training.detection_data import make_detection_iteration

    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    rows = [([], [[0, 0.8, 0.2, 0.2, 0.2, 0.2]])]  # a red box where there is none: mispredicted
    iteration = make_detection_iteration(project, tags=("red", "green", "blue"), rows=rows)
    iteration.artifact.save("model.pt", Bytes(detector_bytes["sure"]), save=True)
    image = iteration.images.get().image
    client = client_for(users["annotator"])
    url = reverse("labeling:image-boxes", args=[project.pk, image.pk])
    page = client.get(url + f"?mispredicted={iteration.pk}&threshold=0.5&overlap=0.5")
    assert page.status_code == 200
    content = page.content.decode()
    assert 'data-testid="model-prediction"' in content
    assert 'data-testid="where-looked-run"' in content
    assert 'data-target=".box-canvas .box-image"' in content
    assert page.context["editor_data"]["imageId"] == image.pk  # where-looked.js follows it
    # The worker explains the top box of the image the editor shows.
    client.post(
        _url(project, iteration=iteration.pk, image=image.pk), headers={"HX-Request": "true"}
    )
    assert explain_prediction(iteration.pk, f"i{image.pk}") == "done"
