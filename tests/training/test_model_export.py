"""Model export jobs over HTTP: the native API (start, list, download), the iteration page's
Export card, refusals (unsupported platforms, unfinished iterations), failures that end the job
with a reason, and the sweep. The worker's task runs in this process (called directly)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration  # noqa: F401
from tests.streaming import body_of
from tests.training.conftest import make_iteration
from training.models import ModelExport
from training.services.model_export import sweep_model_exports
from training.tasks_model_export import export_model_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def iteration(project, colour_artifact):  # noqa: F811
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    return colour_iteration(project, tags, colour_artifact)


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _list_url(iteration) -> str:
    return reverse("api-model-export-list", args=[iteration.project_id, iteration.pk])


def test_admin_exports_over_the_api_and_downloads_the_zip(users, iteration):
    client = _api(users["admin"])

    started = client.post(_list_url(iteration), {"platform": "onnx"}, format="json")

    assert started.status_code == 202, started.json()
    body = started.json()
    assert body["platform"] == "ONNX" and body["status"] == "queued"
    assert body["download_url"] is None
    export = ModelExport.objects.get(pk=body["id"])
    assert export.iteration_id == iteration.pk and export.created_by == users["admin"]

    assert export_model_task(export.pk) == "done"

    listed = client.get(_list_url(iteration)).json()
    assert [(row["platform"], row["status"], row["progress"]) for row in listed] == [
        ("ONNX", "done", 1.0)
    ]
    export.refresh_from_db()
    assert listed[0]["size_bytes"] == export.size_bytes == export.file.size > 100_000
    download = client.get(listed[0]["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert "attachment" in download["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(body_of(download))) as archive:
        names = archive.namelist()
        (manifest_name,) = [name for name in names if name.endswith("manifest.json")]
        manifest = json.loads(archive.read(manifest_name))
    assert {name.rsplit("/", 1)[-1] for name in names} == {
        "model.onnx",
        "manifest.json",
        "README.md",
        "predict.py",
    }
    tags = list(iteration.tags.order_by("index"))
    assert manifest["tags"] == [{"index": t.index, "id": t.tag_id, "name": t.name} for t in tags]
    assert manifest["iteration"]["id"] == iteration.pk
    assert manifest["project"]["name"] == iteration.project.name
    assert manifest["threshold"] == iteration.suggested_threshold
    assert manifest["classification_type"] == "Multiclass"
    assert manifest["onnx_opset"] == 17


def test_a_done_export_is_reused_until_the_threshold_changes(users, iteration):
    client = _api(users["admin"])
    first = client.post(_list_url(iteration), {"platform": "TorchScript"}, format="json").json()
    export_model_task(first["id"])

    again = client.post(_list_url(iteration), {"platform": "torchscript"}, format="json")

    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert again.json()["status"] == "done"
    iteration.suggested_threshold = 0.3
    iteration.save(update_fields=["suggested_threshold"])
    stale = client.post(_list_url(iteration), {"platform": "TorchScript"}, format="json")
    assert stale.status_code == 202 and stale.json()["status"] == "queued"
    assert ModelExport.objects.filter(iteration=iteration).count() == 1
    old_file = ModelExport.objects.get(pk=first["id"]).file.name
    export_model_task(first["id"])
    export = ModelExport.objects.get(pk=first["id"])
    assert export.status == "done" and export.threshold == 0.3
    assert export.file.name != old_file and export.file.storage.exists(export.file.name)
    assert not export.file.storage.exists(old_file)


@pytest.mark.parametrize("platform", ["TensorFlow", "CoreML", "DockerFile", "VAIDK", "OpenVino"])
def test_other_platforms_answer_not_supported_by_this_server(users, iteration, platform):
    response = _api(users["admin"]).post(
        _list_url(iteration), {"platform": platform.lower()}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "export_platform_not_supported"
    assert body["message"] == (
        f"Exporting to {platform} is not supported by this server; it exports ONNX and TorchScript."
    )
    assert body["supported"] == ["ONNX", "TorchScript"]
    assert not ModelExport.objects.exists()


def test_an_iteration_without_a_model_cannot_be_exported(users, project):
    training = make_iteration(project, status="training")

    response = _api(users["admin"]).post(_list_url(training), {"platform": "ONNX"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "iteration_not_exportable"
    assert not ModelExport.objects.exists()


def test_members_below_admin_cannot_export_or_download(users, iteration):
    for role, expected in (("reviewer", 403), ("annotator", 403), ("non_member", 404)):
        client = _api(users[role])
        assert client.post(_list_url(iteration), {"platform": "ONNX"}).status_code == expected
        assert client.get(_list_url(iteration)).status_code == expected
    assert not ModelExport.objects.exists()


def test_a_broken_model_file_fails_the_export_with_a_reason(users, iteration):
    iteration.artifact.save("model.pt", ContentFile(b"not a torch file"), save=True)
    export = _api(users["admin"]).post(_list_url(iteration), {"platform": "ONNX"}).json()

    assert export_model_task(export["id"]) == "failed"

    row = ModelExport.objects.get(pk=export["id"])
    assert row.failure_reason == "unexpected" and row.finished is not None
    assert "unexpected error" in row.failure_message
    assert not row.file
    listed = _api(users["admin"]).get(_list_url(iteration)).json()
    assert listed[0]["status"] == "failed" and listed[0]["download_url"] is None
    # A failed export is queued again by the next request.
    again = _api(users["admin"]).post(_list_url(iteration), {"platform": "ONNX"})
    assert again.status_code == 202 and again.json()["status"] == "queued"


def test_a_second_delivery_of_the_task_does_nothing(users, iteration):
    export = _api(users["admin"]).post(_list_url(iteration), {"platform": "ONNX"}).json()
    ModelExport.objects.filter(pk=export["id"]).update(
        status="exporting", attempts=1, lease_expires=timezone.now() + timedelta(minutes=1)
    )

    assert export_model_task(export["id"]) is None
    assert ModelExport.objects.get(pk=export["id"]).status == "exporting"


def test_the_sweep_requeues_a_lost_export_once_then_fails_it(users, iteration):
    export = _api(users["admin"]).post(_list_url(iteration), {"platform": "ONNX"}).json()
    past = timezone.now() - timedelta(seconds=1)
    ModelExport.objects.filter(pk=export["id"]).update(
        status="exporting", attempts=1, lease_expires=past
    )

    assert sweep_model_exports() == 1
    row = ModelExport.objects.get(pk=export["id"])
    assert row.status == "queued" and row.lease_expires is None

    ModelExport.objects.filter(pk=export["id"]).update(
        status="exporting", attempts=2, lease_expires=past
    )
    assert sweep_model_exports() == 1
    row = ModelExport.objects.get(pk=export["id"])
    assert row.status == "failed" and row.failure_reason == "worker_lost"


def test_the_sweep_fails_an_export_no_worker_took(users, iteration):
    export = _api(users["admin"]).post(_list_url(iteration), {"platform": "ONNX"}).json()
    ModelExport.objects.filter(pk=export["id"]).update(created=timezone.now() - timedelta(hours=1))

    assert sweep_model_exports() == 1
    row = ModelExport.objects.get(pk=export["id"])
    assert row.status == "failed" and row.failure_reason == "not_started"
    assert "No worker took this export" in row.failure_message


def test_the_iteration_page_lists_exports_for_admins_only(client_for, users, iteration):
    url = reverse("training:iteration-performance", args=[iteration.project_id, iteration.pk])
    admin = client_for(users["admin"])
    start = reverse("training:iteration-export-start", args=[iteration.project_id, iteration.pk])

    started = admin.post(start, {"platform": "ONNX"}, HTTP_HX_REQUEST="true")

    assert started.status_code == 200
    card = started.content.decode()
    assert 'data-testid="model-export-onnx" data-status="queued"' in card
    assert "hx-trigger=" in card  # polled while it runs
    export_model_task(ModelExport.objects.get().pk)
    page = admin.get(url).content.decode()
    assert 'data-testid="model-exports"' in page
    assert 'data-testid="model-export-onnx" data-status="done"' in page
    assert 'data-testid="model-export-download"' in page
    export = ModelExport.objects.get()
    download = admin.get(
        reverse(
            "training:iteration-export-download",
            args=[iteration.project_id, iteration.pk, export.pk],
        )
    )
    assert download.status_code == 200
    assert zipfile.is_zipfile(io.BytesIO(body_of(download)))
    reviewer_page = client_for(users["reviewer"]).get(url).content.decode()
    assert 'data-testid="model-exports"' not in reviewer_page


def test_the_page_shows_why_a_platform_is_refused(client_for, users, iteration):
    start = reverse("training:iteration-export-start", args=[iteration.project_id, iteration.pk])

    response = client_for(users["admin"]).post(
        start, {"platform": "CoreML"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 400
    assert "Exporting to CoreML is not supported by this server" in response.content.decode()
    assert not ModelExport.objects.exists()
