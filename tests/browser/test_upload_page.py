"""Upload page in real Chromium: an admin adds a tag inline and it comes chosen; after the
queue is done the file list is reset and "Go to the images" leads to the gallery."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from labeling.models import Project, Role
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")  # a folder: save screenshots of the pages there


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_add_a_tag_inline_upload_with_it_and_go_to_the_images(page, login):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL, name="Fruit")
    admin = MembershipFactory(project=project, role=Role.ADMIN, user__username="boss").user
    TagFactory(project=project, name="apple")
    login(admin)
    page.goto(f"/projects/{project.pk}/upload/")
    page.get_by_test_id("upload-tag-apple").locator("input").check()
    page.get_by_test_id("upload-new-tag").fill("pear")
    page.get_by_test_id("upload-new-tag").press("Enter")
    pear = page.get_by_test_id("upload-tag-pear").locator("input")
    expect(pear).to_be_checked()  # swapped in, chosen for this batch
    expect(page.get_by_test_id("upload-tag-apple").locator("input")).to_be_checked()  # kept
    expect(page.get_by_test_id("upload-new-tag")).to_have_value("")
    assert page.url.endswith(f"/projects/{project.pk}/upload/")  # no reload: htmx
    shot(page, "upload-new-tag")

    page.get_by_test_id("upload-new-tag").fill("Pear")
    page.get_by_test_id("upload-new-tag-add").click()
    expect(page.get_by_test_id("upload-new-tag-error")).to_contain_text("already a tag")
    page.get_by_test_id("upload-new-tag").fill("")

    expect(page.get_by_test_id("upload-go-images")).to_be_hidden()
    files = [
        {"name": f"p{i}.png", "mimeType": "image/png", "buffer": make_image(300, 300)}
        for i in range(2)
    ]
    files[1]["buffer"] = make_image(300, 300, color=(10, 200, 30))
    page.get_by_test_id("upload-input").set_input_files(files)
    expect(page.get_by_test_id("upload-selection")).to_contain_text("2 files chosen")
    page.get_by_test_id("upload-tag-pear").locator("input").check()
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("upload-summary")).to_have_attribute("data-done", "true")
    expect(page.get_by_test_id("upload-summary")).to_have_text("2 accepted, 0 rejected.")
    # The queue is done: the chosen files are gone, the link to the images is there.
    expect(page.get_by_test_id("upload-selection")).to_have_text("No files chosen.")
    assert page.get_by_test_id("upload-input").evaluate("input => input.files.length") == 0
    expect(page.get_by_test_id("upload-go-images")).to_be_visible()
    shot(page, "upload-done")
    for image in project.images.all():
        assert sorted(image.image_tags.values_list("tag__name", flat=True)) == ["apple", "pear"]

    page.get_by_test_id("upload-go-images").click()
    page.wait_for_url(f"**/projects/{project.pk}/")


def test_annotators_get_no_new_tag_field(page, login, users):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL, name="Fruit")
    MembershipFactory(project=project, user=users["annotator"])
    login(users["annotator"])
    page.goto(f"/projects/{project.pk}/upload/")
    expect(page.get_by_test_id("upload-tags")).to_be_visible()
    expect(page.get_by_test_id("upload-new-tag")).to_have_count(0)
