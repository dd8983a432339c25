"""A detection project in real Chromium: the gallery opens the box editor, the editor's counts
follow its saves, and its way back returns to the gallery with the same filter."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from labeling.models import Project, Role
from tests.browser.test_box_editor import drag, wait_saved
from tests.conftest import make_image
from tests.factories import (
    ImageFactory,
    MembershipFactory,
    ProjectFactory,
    RegionFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)

W, H = 400, 300


@pytest.fixture
def street():
    project = ProjectFactory(kind=Project.Kind.DETECTION, name="Street")
    user = MembershipFactory(project=project, role=Role.ANNOTATOR, user__username="boxer").user
    cat = TagFactory(project=project, name="cat")
    images = [
        ImageFactory(
            project=project,
            width=W,
            height=H,
            content=make_image(W, H, (60 + 40 * i, 120, 200)),
            original_name=f"street{i}.png",
        )
        for i in range(3)
    ]
    RegionFactory(image=images[0], tag=cat)
    images[0].is_tagged = True
    images[0].save(update_fields=["is_tagged"])
    return project, user, images


def test_detection_gallery_opens_the_box_editor_whose_counts_follow_saves_and_lead_back(
    page, login, street, tmp_path
):
    project, user, images = street
    login(user)
    page.goto(f"/projects/{project.pk}/?filter=untagged")
    expect(page.get_by_test_id("thumb")).to_have_count(2)
    # Boxes are drawn one image at a time: no bulk Tag/Untag buttons that would always refuse.
    expect(page.get_by_test_id("bulk-tag-button")).to_have_count(0)
    expect(page.get_by_test_id("bulk-untag-button")).to_have_count(0)
    page.screenshot(path=tmp_path / "detection-gallery.png", full_page=True)

    page.get_by_test_id("thumb-link").first.click()
    newest = images[-1]
    expect(page).to_have_url(re.compile(rf"/images/{newest.pk}/boxes/\?filter=untagged$"))
    editor = page.get_by_test_id("box-editor")
    expect(editor).to_have_attribute("data-ready", "1")
    counts = page.get_by_test_id("image-counts")
    expect(counts).to_have_text("1 with boxes · 2 without")

    drag(page, (40, 30), (200, 150))
    wait_saved(page)
    expect(counts).to_have_text("2 with boxes · 1 without")
    expect(page.get_by_test_id("box-count")).to_have_text("1")
    page.keyboard.press("Delete")
    wait_saved(page)
    expect(counts).to_have_text("1 with boxes · 2 without")
    page.screenshot(path=tmp_path / "detection-box-editor.png", full_page=True)

    page.get_by_test_id("back-to-gallery").click()
    expect(page).to_have_url(re.compile(rf"/projects/{project.pk}/\?filter=untagged$"))
    expect(page.get_by_test_id("filter-untagged")).to_have_attribute("aria-current", "true")
