"""Keyboard tagging in real Chromium: five images tagged with five key presses, still there after
a reload; and a non-member sees 404."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling.models import ImageTag, Project, Role
from labeling.services.tagging import set_image_tags
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def annotator_project():
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Fruit")
    user = MembershipFactory(project=project, role=Role.ANNOTATOR, user__username="ann").user
    tags = [TagFactory(project=project, name=name) for name in ("apple", "banana", "cherry")]
    images = [ImageFactory(project=project) for _ in range(6)]
    return project, user, tags, sorted(images, key=lambda i: i.pk, reverse=True)


def shown_image_id(page) -> int:
    return int(page.get_by_test_id("tagging-stage").get_attribute("data-image-id"))


def test_tag_five_images_by_keyboard_with_auto_advance(page, login, annotator_project):
    project, user, tags, images = annotator_project  # images in gallery order
    login(user)
    page.goto(f"/projects/{project.id}/")
    page.get_by_test_id("thumb").first.locator("a").click()
    page.wait_for_url(f"**/projects/{project.id}/images/{images[0].id}/")
    assert page.get_by_test_id("auto-advance").is_checked()

    keys = ["1", "2", "3", "1", "2"]
    for n, key in enumerate(keys):
        assert shown_image_id(page) == images[n].id
        page.keyboard.press(key)
        page.wait_for_selector(f'#tagging-stage[data-image-id="{images[n + 1].id}"]')
    assert page.url.endswith(f"/projects/{project.id}/images/{images[5].id}/")
    # Saves run beside the navigation; wait for the last one before reading the database.
    expect(page.locator("[data-tagging-keys]")).to_have_attribute("data-pending-saves", "0")
    assert page.get_by_test_id("save-status").is_hidden()

    expected = {images[n].id: tags[int(key) - 1].name for n, key in enumerate(keys)}
    stored = dict(
        ImageTag.objects.filter(image__project=project).values_list("image_id", "tag__name")
    )
    assert stored == expected

    page.reload()
    assert shown_image_id(page) == images[5].id
    assert page.locator('#tag-form button[aria-pressed="true"]').count() == 0
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f'#tagging-stage[data-image-id="{images[4].id}"]')
    pressed = page.locator('#tag-form button[aria-pressed="true"]')
    assert pressed.count() == 1 and "banana" in pressed.inner_text()

    page.goto(f"/projects/{project.id}/")
    assert page.get_by_test_id("count-tagged").inner_text() == "5"
    assert page.get_by_test_id("count-untagged").inner_text() == "1"
    assert page.get_by_test_id(f"count-tag-{tags[0].id}").inner_text() == "2"


def test_keymap_opens_with_question_mark(page, login, annotator_project):
    project, user, _tags, images = annotator_project
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    assert page.get_by_test_id("keymap").is_hidden()
    page.keyboard.press("?")
    assert page.get_by_test_id("keymap").is_visible()
    page.keyboard.press("Escape")
    assert page.get_by_test_id("keymap").is_hidden()


def test_non_member_sees_404_on_the_project_page(page, login, annotator_project):
    project, _user, _tags, images = annotator_project
    login(UserFactory(username="stranger"))
    response = page.goto(f"/projects/{project.id}/")
    assert response.status == 404
    assert page.get_by_test_id("error").is_visible()
    assert project.name not in page.content()
    assert page.goto(f"/projects/{project.id}/images/{images[0].id}/").status == 404


def test_a_conflicting_background_save_is_reported_not_overwritten(page, login, annotator_project):
    project, user, tags, images = annotator_project
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    page.wait_for_selector('[data-tagging-keys][data-next-stage="ready"]')
    # Another annotator tags the image after this page loaded it.
    other = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    set_image_tags(image=images[0], tags=[tags[2]], by=other, version=1)

    page.keyboard.press("1")
    page.wait_for_selector(f'#tagging-stage[data-image-id="{images[1].id}"]')
    status = page.get_by_test_id("save-status")
    status.wait_for(state="visible")
    assert "was not saved" in status.inner_text()
    assert "Someone else changed" in status.inner_text()
    stored = list(ImageTag.objects.filter(image=images[0]).values_list("tag__name", flat=True))
    assert stored == ["cherry"]


def test_tag_key_without_a_fetched_stage_saves_and_advances_in_one_request(
    page, login, annotator_project
):
    project, user, _tags, images = annotator_project

    def no_stage_prefetch(route):
        request = route.request
        if request.method == "GET" and request.headers.get("hx-target") == "tagging-stage":
            route.abort()
        else:
            route.continue_()

    page.route("**/images/**", no_stage_prefetch)
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    page.keyboard.press("2")
    page.wait_for_selector(f'#tagging-stage[data-image-id="{images[1].id}"]')
    assert page.url.endswith(f"/images/{images[1].id}/")
    stored = list(ImageTag.objects.filter(image=images[0]).values_list("tag__name", flat=True))
    assert stored == ["banana"]


def test_multilabel_keys_toggle_tags_on_the_same_image(page, login, annotator_project):
    project, user, _tags, images = annotator_project
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.MULTILABEL)
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    assert page.get_by_test_id("auto-advance").count() == 0
    for key, pressed in (("1", 1), ("3", 2), ("1", 1)):
        page.keyboard.press(key)
        expect(page.locator('#tag-form button[aria-pressed="true"]')).to_have_count(pressed)
    assert shown_image_id(page) == images[0].id
    page.reload()
    pressed = page.locator('#tag-form button[aria-pressed="true"]')
    assert pressed.count() == 1 and "cherry" in pressed.inner_text()


def test_gallery_shift_click_selects_a_range_and_bulk_tags_it(page, login, annotator_project):
    project, user, tags, images = annotator_project
    login(user)
    page.goto(f"/projects/{project.id}/")
    checks = page.get_by_test_id("select-image")
    assert page.get_by_test_id("bulk-tag-button").is_disabled()
    checks.nth(1).click()
    checks.nth(4).click(modifiers=["Shift"])
    assert page.get_by_test_id("selected-count").inner_text() == "4 selected"
    page.get_by_test_id("bulk-tag").select_option(str(tags[1].id))
    page.get_by_test_id("bulk-tag-button").click()
    page.get_by_test_id("bulk-notice").wait_for()
    # The filter bar reloads its counts on the gallery-changed event.
    expect(page.get_by_test_id("count-tagged")).to_have_text("4")
    assert page.get_by_test_id(f"count-tag-{tags[1].id}").inner_text() == "4"
    tagged = set(ImageTag.objects.filter(tag=tags[1]).values_list("image_id", flat=True))
    assert tagged == {image.id for image in images[1:5]}
    assert page.get_by_test_id("selected-count").inner_text() == "0 selected"


def test_select_all_on_page_then_untag(page, login, annotator_project):
    project, user, tags, _images = annotator_project
    login(user)
    page.goto(f"/projects/{project.id}/")
    page.get_by_test_id("select-all").check()
    assert page.get_by_test_id("selected-count").inner_text() == "6 selected"
    page.get_by_test_id("bulk-tag").select_option(str(tags[0].id))
    page.get_by_test_id("bulk-tag-button").click()
    expect(page.get_by_test_id("count-untagged")).to_have_text("0")
    page.get_by_test_id("select-all").check()
    page.get_by_test_id("bulk-tag").select_option("")
    page.get_by_test_id("bulk-untag-button").click()
    expect(page.get_by_test_id("count-untagged")).to_have_text("6")
    assert not ImageTag.objects.filter(image__project=project).exists()


def pressed_names(page) -> list[str]:
    return [
        b.inner_text().split(maxsplit=1)[-1]
        for b in page.locator('#tag-form button[aria-pressed="true"]').all()
    ]


def test_a_key_that_removes_a_tag_stays_says_so_and_u_undoes_it(page, login, annotator_project):
    project, user, tags, images = annotator_project
    set_image_tags(image=images[0], tags=[tags[0]], by=user, version=None)
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    page.wait_for_selector('[data-tagging-keys][data-next-stage="ready"]')
    assert page.get_by_test_id("auto-advance").is_checked()  # the default

    page.keyboard.press("1")  # apple is on: the key takes it off, and must not move on
    status = page.get_by_test_id("change-status")
    status.wait_for(state="visible")
    assert "apple removed" in status.inner_text()
    page.wait_for_timeout(300)  # an advance would have swapped the stage by now
    assert shown_image_id(page) == images[0].id
    assert pressed_names(page) == []
    assert not ImageTag.objects.filter(image=images[0]).exists()

    page.keyboard.press("u")
    page.wait_for_selector('#tag-form button[aria-pressed="true"]')
    assert pressed_names(page) == ["apple"]
    assert shown_image_id(page) == images[0].id
    stored = list(ImageTag.objects.filter(image=images[0]).values_list("tag__name", flat=True))
    assert stored == ["apple"]


def test_ctrl_z_after_auto_advance_goes_back_and_restores_the_last_image(
    page, login, annotator_project
):
    project, user, _tags, images = annotator_project
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    page.wait_for_selector('[data-tagging-keys][data-next-stage="ready"]')
    page.keyboard.press("2")
    page.wait_for_selector(f'#tagging-stage[data-image-id="{images[1].id}"]')
    status = page.get_by_test_id("change-status")
    status.wait_for(state="visible")
    assert "banana added" in status.inner_text()

    page.keyboard.press("Control+z")
    page.wait_for_selector(f'#tagging-stage[data-image-id="{images[0].id}"]')
    expect(page.locator('#tag-form button[aria-pressed="true"]')).to_have_count(0)
    assert page.url.endswith(f"/images/{images[0].id}/")
    assert "Undone: banana removed" in page.get_by_test_id("change-status").inner_text()
    assert not ImageTag.objects.filter(image=images[0]).exists()
    # A second undo has nothing left to undo: it says so and changes nothing.
    page.keyboard.press("u")
    expect(page.get_by_test_id("change-status")).to_have_text("Nothing to undo.")
    assert not ImageTag.objects.filter(image=images[0]).exists()


def test_key_help_lists_undo_and_the_review_keys(page, login, annotator_project):
    project, user, _tags, images = annotator_project
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    page.keyboard.press("?")
    keymap = page.get_by_test_id("keymap")
    assert keymap.is_visible()
    text = keymap.inner_text()
    for needed in ("Undo", "Ctrl", "Next untagged image", "Save and next", "Dismiss", "Accept"):
        assert needed in text, needed


def test_undo_never_overwrites_a_later_change_by_someone_else(page, login, annotator_project):
    project, user, tags, images = annotator_project
    login(user)
    page.goto(f"/projects/{project.id}/images/{images[0].id}/")
    page.wait_for_selector('[data-tagging-keys][data-next-stage="ready"]')
    page.keyboard.press("1")
    page.wait_for_selector(f'#tagging-stage[data-image-id="{images[1].id}"]')
    expect(page.locator("[data-tagging-keys]")).to_have_attribute("data-pending-saves", "0")
    other = MembershipFactory(project=project, role=Role.ANNOTATOR).user
    set_image_tags(image=images[0], tags=[tags[2]], by=other, version=2)  # after the key's save

    page.keyboard.press("u")
    page.wait_for_selector(f'#tagging-stage[data-image-id="{images[0].id}"]')
    expect(page.get_by_test_id("conflict")).to_contain_text("Someone else changed")
    assert page.url.endswith(f"/images/{images[0].id}/")
    stored = list(ImageTag.objects.filter(image=images[0]).values_list("tag__name", flat=True))
    assert stored == ["cherry"]
