"""Export on the Import/Export page in real Chromium, by keyboard alone: choose a format and a
tag, start it, watch the worker's progress, download the zip from the link."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from playwright.sync_api import expect

from labeling.models import Project, Region, Role
from tests.conftest import make_image
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")  # a folder: save screenshots of the pages there


def test_a_reviewer_exports_one_tags_images_by_keyboard_and_downloads_the_zip(
    page, login, celery_worker_redis
):
    project = ProjectFactory(kind=Project.Kind.DETECTION, name="Street")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    car, bike = TagFactory(project=project, name="car"), TagFactory(project=project, name="bike")
    for number, tag in enumerate([car, car, bike]):
        image = ImageFactory(
            project=project,
            original_name=f"street{number}.png",
            width=40,
            height=30,
            content=make_image(40, 30, (number * 60, 10, 10)),
            is_tagged=True,
        )
        Region.objects.create(image=image, tag=tag, left=0.1, top=0.1, width=0.5, height=0.5)
    login(reviewer)
    page.goto(f"/projects/{project.pk}/datasets/")
    form = page.get_by_test_id("export-form")
    expect(page.get_by_test_id("import-form")).to_have_count(0)  # admins import

    page.get_by_test_id("export-format").focus()
    page.keyboard.press("End")  # the last detection format: YOLO
    expect(page.get_by_test_id("export-format")).to_have_value("yolo")
    page.keyboard.press("Tab")  # the gallery filter
    expect(page.get_by_test_id("export-filter")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("export-tag-car")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.get_by_test_id("export-tag-car")).to_be_checked()
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "export-form.png"), full_page=True)
    form.get_by_role("button", name="Export").focus()
    page.keyboard.press("Enter")

    status = page.get_by_test_id("export-status")
    expect(status).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.get_by_test_id("export-message")).to_have_text("Exported 2 images.")
    link = page.get_by_test_id("export-download")
    expect(link).to_contain_text("street-yolo.zip")
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "export-done.png"), full_page=True)
    link.focus()
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    data = open(download_info.value.path(), "rb").read()  # noqa: SIM115 - a test's temp file
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        assert {"images/street0.png", "images/street1.png", "classes.txt"} <= names
        assert "images/street2.png" not in names
        assert json.loads(archive.read("loupe.json"))["tags"] == ["car", "bike"]
    # A reload keeps the finished export and lists it.
    page.reload()
    expect(page.get_by_test_id("export-list")).to_contain_text("street-yolo.zip")


def test_export_these_in_the_gallery_opens_the_form_with_its_filter_chosen(page, login):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL, name="Fruit")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    TagFactory(project=project, name="apple")
    pear = TagFactory(project=project, name="pear")
    ImageFactory(project=project, original_name="p.png")
    login(reviewer)
    page.goto(f"/projects/{project.pk}/")
    page.get_by_test_id(f"filter-tag-{pear.pk}").click()
    expect(page.get_by_test_id(f"filter-tag-{pear.pk}")).to_have_attribute("aria-current", "true")
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "gallery-export-these.png"))
    page.get_by_test_id("export-these").click()
    expect(page.get_by_test_id("export-tag-pear")).to_be_checked()
    expect(page.get_by_test_id("export-tag-apple")).not_to_be_checked()
