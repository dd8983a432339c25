"""Export a model from the iteration page in real Chromium: choose the platform, start it, watch
the worker (a real one, on Redis) finish, download the zip from the card."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from playwright.sync_api import expect

from labeling.models import Role
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")  # a folder: save screenshots of the pages there


def test_an_admin_exports_onnx_from_the_iteration_page_and_downloads_it(
    page,
    login,
    celery_worker_redis,
    colour_artifact,  # noqa: F811
):
    project = ProjectFactory(name="Colours")
    admin = MembershipFactory(project=project, role=Role.ADMIN, user__username="boss").user
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, colour_artifact)
    login(admin)
    page.goto(f"/projects/{project.pk}/iterations/{iteration.pk}/")
    card = page.get_by_test_id("model-exports")
    expect(card).to_contain_text("Export the model")
    expect(page.get_by_test_id("model-export-list")).to_have_count(0)

    page.get_by_test_id("model-export-platform").select_option("ONNX")
    page.get_by_test_id("model-export-start").click()

    row = page.get_by_test_id("model-export-onnx")
    expect(row).to_have_attribute("data-status", "done", timeout=120_000)
    expect(row).to_contain_text("MB")
    if SHOTS:
        card.scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(SHOTS, "model-export-done.png"), full_page=True)
    with page.expect_download() as download_info:
        page.get_by_test_id("model-export-download").click()
    assert download_info.value.suggested_filename == "colours-iteration-1-onnx.zip"
    data = open(download_info.value.path(), "rb").read()  # noqa: SIM115 - a test's temp file
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("colours-iteration-1-onnx/manifest.json"))
    assert [tag["name"] for tag in manifest["tags"]] == ["red", "green", "blue"]
    # A reload keeps the finished export listed.
    page.reload()
    expect(page.get_by_test_id("model-export-onnx")).to_have_attribute("data-status", "done")
