"""Keyboard help and focus (issue 11, item 14): one "?" dialog on every keyboard page (tagging,
review, box editor) listing all keys; focus back in the field after an htmx swap (adding tags in
Settings); kbd badges readable on selected buttons."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling.models import Project, Role, Tag
from labeling.services.tagging import set_image_tags
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_box_editor_has_the_question_mark_dialog_and_keys_wait_behind_it(page, login):
    project = ProjectFactory(kind=Project.Kind.DETECTION, name="Street")
    user = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    TagFactory(project=project, name="cat")
    TagFactory(project=project, name="dog")
    image = ImageFactory(project=project, width=64, height=48)
    login(user)
    page.goto(f"/projects/{project.pk}/images/{image.pk}/boxes/")
    expect(page.get_by_test_id("box-editor")).to_have_attribute("data-ready", "1")
    keymap = page.get_by_test_id("keymap")
    expect(keymap).to_be_hidden()
    page.keyboard.press("?")
    expect(keymap).to_be_visible()
    for needed in ("next box", "Undo", "No objects", "Next image without boxes", "Esc"):
        expect(keymap).to_contain_text(needed)
    page.keyboard.press("2")  # behind the open dialog: must not choose dog
    expect(page.get_by_test_id("key-target")).to_contain_text("next box: cat.")
    page.keyboard.press("Escape")
    expect(keymap).to_be_hidden()
    page.get_by_test_id("keymap-button").click()
    expect(keymap).to_be_visible()
    page.get_by_test_id("keymap-close").click()
    expect(keymap).to_be_hidden()


def test_review_page_key_help_lists_save_dismiss_and_accept(page, login):
    project = ProjectFactory(kind=Project.Kind.MULTICLASS)
    user = MembershipFactory(project=project, role=Role.REVIEWER).user
    TagFactory(project=project, name="cat")
    image = ImageFactory(project=project)
    login(user)
    page.goto(f"/projects/{project.pk}/images/{image.pk}/")
    page.keyboard.press("?")
    keymap = page.get_by_test_id("keymap")
    expect(keymap).to_be_visible()
    for key, words in (("S", "Save and next"), ("D", "Dismiss"), ("A", "Accept"), ("U", "Undo")):
        row = keymap.locator("tr", has=page.locator(f"kbd:text-is('{key}')"))
        expect(row).to_contain_text(words)
    page.keyboard.press("1")  # behind the open dialog: must not tag
    page.keyboard.press("Escape")
    expect(keymap).to_be_hidden()
    assert not image.image_tags.exists()


def test_adding_tags_in_settings_keeps_the_focus_in_the_name_field(page, login):
    project = ProjectFactory(kind=Project.Kind.MULTILABEL, name="Birds")
    admin = MembershipFactory(project=project, role=Role.ADMIN).user
    login(admin)
    page.goto(f"/projects/{project.pk}/settings/")
    name = page.locator("#tags-section form:has([data-testid=add-tag]) input[name=name]")
    name.focus()
    for tag in ("heron", "egret", "stork"):
        page.keyboard.type(tag)
        page.keyboard.press("Enter")
        page.locator(f'[data-testid=tag-row] input[name=name][value="{tag}"]').wait_for()
        # Focus is back in the (new, empty) name field: the next name can be typed at once.
        expect(name).to_be_focused()
    names = set(Tag.objects.filter(project=project).values_list("name", flat=True))
    assert {"heron", "egret", "stork"} <= names
    assert project.name == "Birds"
    project.refresh_from_db()
    assert project.name == "Birds"  # nothing was typed into the project's name field


CONTRAST = """(el) => {
  const rgb = (c) => c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const style = getComputedStyle(el);
  const [a, b] = [lum(style.color), lum(style.backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def test_kbd_badges_stay_readable_on_a_selected_tag_button(page, login):
    project = ProjectFactory(kind=Project.Kind.MULTICLASS)
    user = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    tag = TagFactory(project=project, name="cat")
    image = ImageFactory(project=project)
    set_image_tags(image=image, tags=[tag], by=user, version=None)
    login(user)
    page.goto(f"/projects/{project.pk}/images/{image.pk}/")
    kbd = page.locator('#tag-form button[aria-pressed="true"] kbd')
    assert kbd.evaluate(CONTRAST) >= 4.5
