"""The box editor in real Chromium: draw, retag, move, undo, delete, conflicts, N to go on."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling.models import Image, Project, Region, Role
from tests.conftest import make_image
from tests.factories import ImageFactory, MembershipFactory, ProjectFactory, TagFactory

pytestmark = pytest.mark.django_db(transaction=True)

W, H = 400, 300


@pytest.fixture
def setup():
    project = ProjectFactory(kind=Project.Kind.DETECTION, name="Street")
    user = MembershipFactory(project=project, role=Role.ANNOTATOR, user__username="boxer").user
    cat = TagFactory(project=project, name="cat")
    dog = TagFactory(project=project, name="dog")
    older = ImageFactory(
        project=project,
        width=W,
        height=H,
        content=make_image(W, H, (90, 90, 90)),
        original_name="older.png",
    )
    image = ImageFactory(
        project=project,
        width=W,
        height=H,
        content=make_image(W, H, (120, 160, 200)),
        original_name="street.png",
    )
    return {
        "project": project,
        "user": user,
        "cat": cat,
        "dog": dog,
        "image": image,
        "older": older,
    }


def open_editor(page, project, image):
    page.goto(f"/projects/{project.pk}/images/{image.pk}/boxes/")
    expect(page.get_by_test_id("box-editor")).to_have_attribute("data-ready", "1")


def screen(page, x: float, y: float) -> tuple[float, float]:
    """The viewport point where image pixel (x, y) is shown."""
    return tuple(
        page.evaluate(
            """([x, y]) => { const m = document.querySelector('.box-canvas').getScreenCTM();
                         return [m.a * x + m.e, m.d * y + m.f]; }""",
            [x, y],
        )
    )


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*screen(page, *start))
    page.mouse.down()
    page.mouse.move(*screen(page, *end), steps=6)
    page.mouse.up()


def wait_saved(page):
    expect(page.get_by_test_id("save-status")).to_have_text("Saved.")


def test_draw_two_boxes_retag_one_move_one_and_reload(page, login, setup):
    project, image = setup["project"], setup["image"]
    login(setup["user"])
    open_editor(page, project, image)
    drag(page, (40, 30), (200, 150))
    expect(page.get_by_test_id("box")).to_have_count(1)
    drag(page, (220, 160), (380, 280))
    expect(page.get_by_test_id("box")).to_have_count(2)
    page.mouse.click(*screen(page, 300, 220))  # click the second box: keys now retag it
    expect(page.get_by_test_id("key-target")).to_contain_text("retag the selected box")
    page.keyboard.press("2")  # it becomes a dog
    drag(page, (120, 90), (140, 100))  # move the first box by (+20, +10) image pixels
    wait_saved(page)

    page.reload()
    expect(page.get_by_test_id("box-editor")).to_have_attribute("data-ready", "1")
    expect(page.get_by_test_id("box")).to_have_count(2)
    regions = sorted(Region.objects.filter(image=image).select_related("tag"), key=lambda r: r.left)
    expected = [("cat", 60, 40, 160, 120), ("dog", 220, 160, 160, 120)]
    for region, (tag, x, y, w, h) in zip(regions, expected, strict=True):
        assert region.tag.name == tag
        drawn = (region.left * W, region.top * H, region.width * W, region.height * H)
        assert drawn == pytest.approx((x, y, w, h), abs=1.0)
    assert Image.objects.get(pk=image.pk).is_tagged


def test_delete_undo_redo_and_the_last_tag_is_the_default(page, login, setup):
    project, image = setup["project"], setup["image"]
    login(setup["user"])
    open_editor(page, project, image)
    page.keyboard.press("2")  # nothing selected: dog becomes the tag of the next box
    drag(page, (10, 10), (100, 100))
    wait_saved(page)
    assert list(Region.objects.filter(image=image).values_list("tag__name", flat=True)) == ["dog"]
    page.keyboard.press("Delete")
    expect(page.get_by_test_id("box")).to_have_count(0)
    wait_saved(page)
    assert not Region.objects.filter(image=image).exists()
    page.keyboard.press("Control+z")
    expect(page.get_by_test_id("box")).to_have_count(1)
    wait_saved(page)
    assert Region.objects.filter(image=image).count() == 1
    page.keyboard.press("Control+y")
    expect(page.get_by_test_id("box")).to_have_count(0)
    wait_saved(page)
    assert not Region.objects.filter(image=image).exists()


def test_a_stale_editor_gets_a_conflict_with_a_reload_prompt(page, login, setup):
    project, image = setup["project"], setup["image"]
    login(setup["user"])
    open_editor(page, project, image)
    # Someone else saves first.
    Image.objects.filter(pk=image.pk).update(version=image.version + 1)
    drag(page, (10, 10), (100, 100))
    conflict = page.get_by_test_id("conflict")
    expect(conflict).to_be_visible()
    expect(conflict).to_contain_text("Reload")
    assert not Region.objects.filter(image=image).exists()
    conflict.get_by_role("button", name="Reload").click()
    expect(page.get_by_test_id("box-editor")).to_have_attribute("data-ready", "1")
    expect(page.get_by_test_id("conflict")).to_be_hidden()


def test_n_goes_to_the_next_image_without_boxes(page, login, setup):
    project, image = setup["project"], setup["image"]
    login(setup["user"])
    open_editor(page, project, image)
    drag(page, (10, 10), (100, 100))
    page.keyboard.press("n")  # saves first, then moves on without a page load
    page.wait_for_url(f"**/images/{setup['older'].pk}/boxes/")
    expect(page.get_by_test_id("box-editor")).to_have_attribute("data-ready", "1")
    expect(page.get_by_test_id("image-name")).to_have_text("older.png")
    expect(page.get_by_test_id("box")).to_have_count(0)
    assert Region.objects.filter(image=image).count() == 1
    drag(page, (200, 100), (300, 200))  # saved to the image now shown
    wait_saved(page)
    assert Region.objects.filter(image=setup["older"]).count() == 1
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/images/{image.pk}/boxes/")
    expect(page.get_by_test_id("image-name")).to_have_text("street.png")
    expect(page.get_by_test_id("box")).to_have_count(1)
    page.go_back()  # the browser's history follows the editor
    expect(page.get_by_test_id("image-name")).to_have_text("older.png")


def test_more_like_this_follows_the_editor_from_image_to_image(page, login, setup):
    project, image, older = setup["project"], setup["image"], setup["older"]
    login(setup["user"])
    open_editor(page, project, image)
    like = page.get_by_test_id("more-like-this")
    expect(like).to_have_attribute("href", f"/projects/{project.pk}/?like={image.pk}")
    page.keyboard.press("ArrowRight")  # the next image, without a page load
    page.wait_for_url(f"**/images/{older.pk}/boxes/")
    expect(page.get_by_test_id("image-name")).to_have_text("older.png")
    expect(like).to_have_attribute("href", f"/projects/{project.pk}/?like={older.pk}")


def test_boxes_drawn_after_zoom_and_pan_land_on_the_same_image_pixels(page, login, setup):
    project, image = setup["project"], setup["image"]
    login(setup["user"])
    open_editor(page, project, image)
    scale_before = page.evaluate("document.querySelector('.box-canvas').getScreenCTM().a")
    page.mouse.move(*screen(page, 100, 100))
    page.mouse.wheel(0, -400)  # zoom in around (100, 100)
    page.keyboard.down(" ")
    drag(page, (100, 100), (80, 90))  # pan: the image follows the mouse
    page.keyboard.up(" ")
    assert page.evaluate("document.querySelector('.box-canvas').getScreenCTM().a") > (
        1.5 * scale_before
    )
    drag(page, (120, 110), (160, 170))
    expect(page.get_by_test_id("box")).to_have_count(1)
    wait_saved(page)
    region = Region.objects.get(image=image)
    drawn = (region.left * W, region.top * H, region.width * W, region.height * H)
    assert drawn == pytest.approx((120, 110, 40, 60), abs=1.0)
    # Drawing past the image's edge clips the box to the image.
    page.keyboard.press("f")  # fit the whole image
    drag(page, (300, 200), (W + 50, H + 50))
    expect(page.get_by_test_id("box")).to_have_count(2)
    wait_saved(page)
    clipped = Region.objects.filter(image=image).order_by("-left").first()
    assert clipped.left + clipped.width == pytest.approx(1.0)
    assert clipped.top + clipped.height == pytest.approx(1.0)


def test_a_key_after_drawing_sets_the_next_box_tag_not_the_drawn_one(page, login, setup):
    project, image = setup["project"], setup["image"]
    login(setup["user"])
    open_editor(page, project, image)
    target = page.get_by_test_id("key-target")
    expect(target).to_contain_text("choose the tag of the next box: cat.")
    drag(page, (40, 30), (200, 150))  # a cat
    expect(page.get_by_test_id("box")).to_have_count(1)
    page.keyboard.press("2")  # for the next box: the cat just drawn stays a cat
    expect(target).to_contain_text("choose the tag of the next box: dog.")
    drag(page, (220, 160), (380, 280))  # a dog
    wait_saved(page)
    tags = dict(Region.objects.filter(image=image).values_list("left", "tag__name"))
    assert sorted(tags.values()) == ["cat", "dog"]
    assert tags[min(tags)] == "cat"

    # An explicit click on a box makes the keys retag that box, and the line says so.
    page.mouse.click(*screen(page, 100, 80))
    expect(target).to_contain_text("retag the selected box (cat)")
    page.keyboard.press("2")
    wait_saved(page)
    assert list(Region.objects.filter(image=image).values_list("tag__name", flat=True)) == [
        "dog",
        "dog",
    ]
    page.keyboard.press("Escape")
    expect(target).to_contain_text("choose the tag of the next box: dog.")


def test_a_drag_shorter_than_six_pixels_is_a_click_not_a_box(page, login, setup):
    project, image = setup["project"], setup["image"]
    login(setup["user"])
    open_editor(page, project, image)
    x, y = screen(page, 100, 100)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 4, y + 3, steps=3)  # 5 px on screen
    page.mouse.up()
    page.wait_for_timeout(400)  # past the save delay: a box would be saving by now
    expect(page.get_by_test_id("box")).to_have_count(0)
    assert not Region.objects.filter(image=image).exists()
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 12, y + 10, steps=3)  # a real (small) drag draws a box
    page.mouse.up()
    expect(page.get_by_test_id("box")).to_have_count(1)
