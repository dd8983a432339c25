"""Triage in real Chromium: open the Predictions tab, select the top (least sure) prediction,
fix its tag in the tagging view, Save and close, and find it among the training images; a
review queue walked with keys only, with the app's default settings (Auto-advance on)."""

from __future__ import annotations

import pytest

from labeling.models import Image, Project, Role
from predictions.models import Prediction
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.predictions.conftest import colour_artifact, colour_iteration  # noqa: F401 (fixture)
from tests.predictions.helpers import crafted_prediction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def triage_project(colour_artifact):  # noqa: F811
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Colours")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    iteration = colour_iteration(project, tags, colour_artifact)
    sure = crafted_prediction(project, iteration, [0.02, 0.97, 0.01])
    unsure = crafted_prediction(project, iteration, [0.40, 0.45, 0.15])  # says green: wrong
    return project, reviewer, sure, unsure


def test_review_the_top_prediction_fix_its_tag_and_save(page, login, triage_project):
    project, reviewer, sure, unsure = triage_project
    login(reviewer)
    page.goto(f"/projects/{project.id}/")
    page.get_by_test_id("tab-predictions").click()
    page.wait_for_url(f"**/projects/{project.id}/predictions/")
    thumbs = page.get_by_test_id("prediction-thumb")
    assert thumbs.count() == 2
    assert thumbs.first.get_attribute("data-image-id") == str(unsure.image_id)

    thumbs.first.get_by_test_id("prediction-check").check()
    assert page.get_by_test_id("selected-count").inner_text() == "1 selected"
    page.get_by_test_id("review-selected").click()
    page.wait_for_url(f"**/projects/{project.id}/images/{unsure.image_id}/**")

    # Pre-filled with the predicted tag; the reviewer fixes it to red.
    green = page.get_by_test_id("tag-button").filter(has_text="green")
    red = page.get_by_test_id("tag-button").filter(has_text="red")
    assert green.get_attribute("aria-pressed") == "true"
    page.keyboard.press("1")
    page.wait_for_selector('[data-testid="tag-button"][aria-pressed="true"]:has-text("red")')
    assert green.get_attribute("aria-pressed") == "false"
    assert red.get_attribute("aria-pressed") == "true"

    page.get_by_test_id("save-and-close").click()
    page.wait_for_url(f"**/projects/{project.id}/predictions/")
    assert "Review done: 1 added to training, 0 dismissed." in page.content()
    remaining = page.get_by_test_id("prediction-thumb")
    assert remaining.count() == 1
    assert remaining.first.get_attribute("data-image-id") == str(sure.image_id)

    page.get_by_test_id("tab-images").click()
    page.wait_for_url(f"**/projects/{project.id}/")
    saved = page.locator(f'[data-testid="thumb"][data-image-id="{unsure.image_id}"]')
    assert saved.count() == 1
    assert "red" in saved.inner_text()

    image = Image.objects.get(pk=unsure.image_id)
    assert image.is_training
    assert list(image.image_tags.values_list("tag__name", flat=True)) == ["red"]
    assert Prediction.objects.get(pk=unsure.pk).status == Prediction.Status.PROMOTED


def stage_image_id(page) -> int:
    return int(page.get_by_test_id("tagging-stage").get_attribute("data-image-id"))


def test_review_queue_tag_keys_stay_s_saves_d_dismisses_and_a_summary_ends_it(
    page, login, triage_project
):
    project, reviewer, sure, unsure = triage_project
    tags = list(project.tags.order_by("pk"))
    third = crafted_prediction(project, sure.iteration, [0.20, 0.30, 0.50])  # none says red
    login(reviewer)
    page.goto(f"/projects/{project.id}/predictions/")
    order = [
        int(t.get_attribute("data-image-id")) for t in page.get_by_test_id("prediction-thumb").all()
    ]
    assert sorted(order) == sorted([unsure.image_id, third.image_id, sure.image_id])
    for check in page.get_by_test_id("prediction-check").all():
        check.check()
    page.get_by_test_id("review-selected").click()
    page.wait_for_url(f"**/images/{order[0]}/**")
    assert page.get_by_test_id("review-position").inner_text() == "Prediction 1 of 3 selected."

    # Auto-advance is on for a new user, but a tag key in review never leaves the prediction.
    page.keyboard.press("1")
    page.wait_for_selector('[data-testid="tag-button"][aria-pressed="true"]:has-text("red")')
    page.wait_for_timeout(300)  # an advance would have swapped the stage by now
    assert stage_image_id(page) == order[0]
    assert page.url.split("?")[0].endswith(f"/images/{order[0]}/")
    page.keyboard.press("s")
    page.wait_for_url(f"**/images/{order[1]}/**")
    assert "Saved to the training data." in page.content()

    page.keyboard.press("d")  # dismiss from inside the review
    page.wait_for_url(f"**/images/{order[2]}/**")
    assert "Dismissed 1 prediction." in page.content()

    page.keyboard.press("1")
    page.wait_for_selector('[data-testid="tag-button"][aria-pressed="true"]:has-text("red")')
    assert stage_image_id(page) == order[2]
    page.get_by_test_id("save-and-close").click()
    page.wait_for_url(f"**/projects/{project.id}/predictions/")
    assert "Review done: 2 added to training, 1 dismissed." in page.content()
    assert page.get_by_test_id("prediction-thumb").count() == 0

    statuses = dict(Prediction.objects.filter(project=project).values_list("image_id", "status"))
    assert statuses == {order[0]: "promoted", order[1]: "dismissed", order[2]: "promoted"}
    labels = dict(
        Image.objects.filter(pk__in=[order[0], order[2]]).values_list("pk", "image_tags__tag")
    )
    assert labels == {order[0]: tags[0].pk, order[2]: tags[0].pk}


def focus_next(page, selector: str, *, backwards: bool = False, limit: int = 80) -> None:
    """Press Tab (or Shift+Tab) until the focused element matches `selector`."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_ten_predictions_into_training_with_keys_only(page, login, triage_project):
    """Issue 11, done when: the review flow adds 10 predictions to training with keys only, and
    the Predictions tab's count and the training image count both change by 10."""
    project, reviewer, sure, _unsure = triage_project
    for _ in range(10):
        crafted_prediction(project, sure.iteration, [0.40, 0.45, 0.15])  # says green
    training_before = project.images.training().count()
    login(reviewer)
    page.goto(f"/projects/{project.id}/")
    assert page.get_by_test_id("count-all").inner_text() == str(training_before)
    page.goto(f"/projects/{project.id}/predictions/")
    assert page.get_by_test_id("open-count").inner_text() == "12 open predictions"

    for _ in range(10):
        focus_next(page, '[data-testid="prediction-check"]:not(:checked)')
        page.keyboard.press("Space")
    assert page.get_by_test_id("selected-count").inner_text() == "10 selected"
    focus_next(page, '[data-testid="review-selected"]', backwards=True)
    page.keyboard.press("Enter")

    for n in range(1, 11):
        page.wait_for_selector(f'[data-testid="review-position"]:has-text("Prediction {n} of 10")')
        shown = stage_image_id(page)
        page.keyboard.press("1")  # red, instead of the predicted green
        page.wait_for_selector('[data-testid="tag-button"][aria-pressed="true"]:has-text("red")')
        assert stage_image_id(page) == shown
        page.keyboard.press("s")
        if n < 10:
            page.wait_for_url(lambda url, shown=shown: f"/images/{shown}/" not in url)
    page.wait_for_url(f"**/projects/{project.id}/predictions/")
    assert "Review done: 10 added to training, 0 dismissed." in page.content()
    assert page.get_by_test_id("open-count").inner_text() == "2 open predictions"
    page.goto(f"/projects/{project.id}/")
    assert page.get_by_test_id("count-all").inner_text() == str(training_before + 10)
    assert Prediction.objects.filter(project=project, status="promoted").count() == 10
