"""Saved gallery filters in real Chromium, by keyboard alone: save the gallery's filter under a
name, reopen it from the list, delete it; then choose it on the export form."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from labeling.models import ImageTag, Role
from tests.conftest import make_image
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")  # a folder: save screenshots of the pages there


def test_a_reviewer_saves_a_filter_by_keyboard_reopens_and_deletes_it(page, login):
    project = ProjectFactory(name="Pets")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    cat = TagFactory(project=project, name="cat")
    untagged = []
    for number in range(4):
        image = ImageFactory(
            project=project,
            original_name=f"pet{number}.png",
            content=make_image(12, 12, (number * 50, 20, 20)),
            is_tagged=number < 2,
        )
        if number < 2:
            ImageTag.objects.create(image=image, tag=cat)
        else:
            untagged.append(image.pk)
    login(reviewer)
    page.goto(f"/projects/{project.pk}/")

    # The Untagged pill, then the name field: Enter on each, no mouse.
    page.get_by_test_id("filter-untagged").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?filter=untagged")
    name = page.get_by_label("Save this filter")
    name.focus()
    page.keyboard.type("Still to tag")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("save-filter-notice")).to_have_text(
        "Saved the filter “Still to tag”."
    )
    link = page.get_by_role("link", name="Saved filter Still to tag: Untagged")
    expect(link).to_be_visible()
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "gallery-saved-filters.png"), full_page=True)

    # Back to every image, then reach the saved filter from the filter bar with Tab.
    page.goto(f"/projects/{project.pk}/")
    expect(page.get_by_test_id("thumb")).to_have_count(4)
    page.get_by_test_id("export-these").focus()
    page.keyboard.press("Tab")
    expect(link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?filter=untagged")
    thumbs = page.get_by_test_id("thumb")
    expect(thumbs).to_have_count(2)
    shown = sorted(int(t.get_attribute("data-image-id")) for t in thumbs.all())
    assert shown == sorted(untagged)
    expect(link).to_have_attribute("aria-current", "true")

    # It is offered on the export form.
    page.goto(f"/projects/{project.pk}/datasets/")
    choice = page.get_by_label("Saved filter")
    expect(choice.locator("option")).to_have_text(
        ["None: choose the images below", "Still to tag (Untagged)"]
    )
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "export-saved-filter.png"), full_page=True)

    # Delete it with the keyboard: Tab from its link reaches its delete button.
    page.goto(f"/projects/{project.pk}/")
    link.focus()
    page.keyboard.press("Tab")
    delete = page.get_by_role("button", name="Delete the saved filter Still to tag")
    expect(delete).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("save-filter-notice")).to_have_text(
        "Deleted the saved filter “Still to tag”."
    )
    expect(page.get_by_test_id("saved-filter")).to_have_count(0)
