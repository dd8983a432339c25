"""The box editor's "No objects" mark in real Chromium: key 0 and the button, cleared by a box."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from labeling.models import Image, ImageTag, Region, Tag
from tests.browser.test_box_editor import drag, open_editor, setup, wait_saved  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def marked(image) -> bool:
    return ImageTag.objects.filter(image=image, tag__kind=Tag.Kind.NEGATIVE).exists()


def test_key_0_and_the_button_mark_no_objects_until_a_box_is_drawn(page, login, setup):  # noqa: F811
    project, image = setup["project"], setup["image"]
    button = page.get_by_test_id("no-objects")
    login(setup["user"])
    open_editor(page, project, image)
    expect(button).to_have_attribute("aria-pressed", "false")

    page.keyboard.press("0")
    expect(button).to_have_attribute("aria-pressed", "true")
    wait_saved(page)
    assert marked(image) and Image.objects.get(pk=image.pk).is_tagged
    if os.environ.get("LOUPE_SCREENSHOT"):
        page.screenshot(path=os.environ["LOUPE_SCREENSHOT"])

    page.reload()  # the mark is the server's, not the page's
    expect(page.get_by_test_id("box-editor")).to_have_attribute("data-ready", "1")
    expect(button).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("0")
    expect(button).to_have_attribute("aria-pressed", "false")
    wait_saved(page)
    assert not marked(image) and not Image.objects.get(pk=image.pk).is_tagged

    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    wait_saved(page)
    assert marked(image)
    drag(page, (40, 30), (200, 150))  # a box: the image has objects after all
    expect(page.get_by_test_id("box")).to_have_count(1)
    expect(button).to_have_attribute("aria-pressed", "false")
    expect(button).to_be_disabled()
    wait_saved(page)
    assert not marked(image) and Region.objects.filter(image=image).count() == 1

    page.keyboard.press("0")  # refused while the image has boxes
    expect(page.get_by_test_id("save-status")).to_contain_text("delete them first")
    assert not marked(image)
