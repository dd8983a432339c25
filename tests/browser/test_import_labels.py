"""Import/Export page in real Chromium: a bare COCO file onto images already in the project,
run by the worker, with the per-item report of the images it could not match."""

from __future__ import annotations

import json
import os

import pytest
from playwright.sync_api import expect

from labeling.models import Project, Role
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")  # a folder: save screenshots of the pages there


def test_a_bare_coco_file_labels_stored_images_and_lists_the_missing_one(
    page, login, celery_worker_redis
):
    project = ProjectFactory(kind=Project.Kind.DETECTION, name="Pets")
    admin = MembershipFactory(project=project, role=Role.ADMIN, user__username="boss").user
    a = ImageFactory(project=project, original_name="a.jpg", width=100, height=100)
    document = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
            {"id": 2, "file_name": "gone.jpg", "width": 100, "height": 100},
        ],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    login(admin)
    page.goto(f"/projects/{project.pk}/datasets/")
    page.get_by_test_id("import-contents-labels").check()
    page.get_by_test_id("import-format").select_option("coco")
    page.get_by_test_id("import-archive").set_input_files(
        {
            "name": "annotations.json",
            "mimeType": "application/json",
            "buffer": json.dumps(document).encode(),
        }
    )
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "import-labels-form.png"), full_page=True)
    page.get_by_test_id("import-form").get_by_role("button", name="Import").click()
    status = page.get_by_test_id("import-status")
    expect(status).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.get_by_test_id("import-message")).to_have_text(
        "Labeled 1 image of the project; 1 listed image skipped."
    )
    skipped = page.get_by_test_id("import-skipped")
    expect(skipped.locator("tr[data-code=not_found]")).to_contain_text("gone.jpg")
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "import-labels-done.png"), full_page=True)
    assert [r.tag.name for r in a.regions.all()] == ["cat"]
    assert project.images.count() == 1
