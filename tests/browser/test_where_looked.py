"""Where the model looked, in real Chromium with a real worker (issue 13): from the mispredicted
walk, the button asks for a Grad-CAM map, the status polls while the worker computes, the
overlay appears over the picture and the toggle hides and shows it from the keyboard; no CSP
violation on the way."""

from __future__ import annotations

import io
import os

import pytest
import skimage.data
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image as PILImage
from playwright.sync_api import expect

from labeling.models import Image
from tests.factories import MembershipFactory, TagFactory
from tests.predictions.conftest import TINY_BACKBONE, colour_artifact  # noqa: F401
from tests.training.conftest import make_iteration
from tests.training.test_where_looked import detector_bytes  # noqa: F401

# red/green/blue. At 0.5 the first image (a red one scored green) is mispredicted.
ROWS = [([0], [0.3, 0.6, 0.1]), ([1], [0.1, 0.8, 0.1]), ([2], [0.1, 0.1, 0.8])]


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/{name}.png", full_page=True)


def _photo() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(skimage.data.chelsea()).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_overlay_opens_in_the_mispredicted_walk_and_toggles_by_keyboard(
    page,
    login,
    celery_worker_redis,
    colour_artifact,  # noqa: F811
):
    member = MembershipFactory(role="annotator", user__username="where-looked-annotator")
    project = member.project
    for name in ("red", "green", "blue"):
        TagFactory(project=project, name=name)
    iteration = make_iteration(project, rows=ROWS, tags=["red", "green", "blue"])
    iteration.backbone = TINY_BACKBONE
    iteration.artifact.save("model.pt", ContentFile(colour_artifact), save=False)
    iteration.save(update_fields=["artifact", "backbone"])
    wrong = iteration.images.order_by("id").first().image
    wrong.file.save("chelsea.jpg", ContentFile(_photo()), save=False)
    Image.objects.filter(pk=wrong.pk).update(file=wrong.file.name, width=451, height=300)

    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" or "Content-Security-Policy" in message.text
            else None
        ),
    )
    login(member.user)
    url = reverse("labeling:image-tag", args=[project.id, wrong.id])
    page.goto(f"{url}?mispredicted={iteration.id}&threshold=0.5")
    expect(page.get_by_test_id("model-prediction")).to_be_visible()

    run = page.get_by_test_id("where-looked-run")
    run.focus()
    page.keyboard.press("Enter")
    toggle = page.get_by_test_id("where-looked-toggle")
    expect(toggle).to_be_visible(timeout=60_000)
    overlay = page.get_by_test_id("where-looked-overlay")
    expect(overlay).to_be_visible()  # shown at once: the user asked for it
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("where-looked-caption")).to_contain_text("model predicts")
    # The overlay covers the picture exactly.
    picture = page.get_by_test_id("stage-image").bounding_box()
    covered = overlay.bounding_box()
    assert picture and covered
    assert abs(picture["x"] - covered["x"]) < 2 and abs(picture["width"] - covered["width"]) < 2
    assert abs(picture["y"] - covered["y"]) < 2 and abs(picture["height"] - covered["height"]) < 2
    natural = overlay.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural[0] > 0 and abs(natural[0] / natural[1] - 451 / 300) < 0.02
    shot(page, "where-looked-mispredicted")

    toggle.focus()
    page.keyboard.press("Enter")
    expect(overlay).to_be_hidden()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Space")
    expect(overlay).to_be_visible()
    assert not problems, problems


@pytest.mark.django_db(transaction=True)
def test_quick_test_review_and_context_reliance_pages_show_where_the_model_looked(
    page,
    login,
    celery_worker_redis,
    colour_artifact,  # noqa: F811
    tmp_path,
):
    member = MembershipFactory(role="admin", user__username="where-looked-admin")
    project = member.project
    for name in ("red", "green", "blue"):
        TagFactory(project=project, name=name)
    iteration = make_iteration(project, rows=ROWS, tags=["red", "green", "blue"])
    iteration.backbone = TINY_BACKBONE
    iteration.artifact.save("model.pt", ContentFile(colour_artifact), save=False)
    iteration.save(update_fields=["artifact", "backbone"])
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    login(member.user)

    # Quick test, stored: the heat map of the tested image, then the stored prediction's review.
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(_photo())
    page.goto(reverse("predictions:quick-test", args=[project.id]))
    page.get_by_test_id("quick-test-file").set_input_files(str(photo))
    page.get_by_test_id("quick-test-store").check()
    page.get_by_test_id("quick-test-run").click()
    expect(page.get_by_test_id("quick-test-result")).to_be_visible()
    page.get_by_test_id("where-looked-run").click()
    expect(page.get_by_test_id("where-looked-overlay")).to_be_visible(timeout=60_000)
    shot(page, "where-looked-quick-test")

    stored = Image.objects.get(project=project, source=Image.Source.PREDICTION)
    review = reverse("labeling:image-tag", args=[project.id, stored.id])
    page.goto(f"{review}?review={stored.id}")
    panel = page.get_by_test_id("prediction-panel")
    panel.get_by_test_id("where-looked-run").click()
    expect(page.get_by_test_id("where-looked-overlay")).to_be_visible(timeout=60_000)
    shot(page, "where-looked-review")

    # Context reliance, linked from the performance page.
    page.goto(reverse("training:iteration-performance", args=[project.id, iteration.id]))
    page.get_by_test_id("context-reliance-link").click()
    page.get_by_test_id("reliance-run").click()
    expect(page.get_by_test_id("reliance-row")).to_have_count(3, timeout=90_000)
    expect(page.get_by_test_id("reliance-method")).to_contain_text("Limits")
    shot(page, "context-reliance")
    assert not problems, problems


@pytest.mark.django_db(transaction=True)
def test_a_detectors_map_lies_over_the_box_editors_image_and_toggles(
    page,
    login,
    celery_worker_redis,
    detector_bytes,  # noqa: F811
):
    from labeling.models import Project
    from tests.training.detection_data import make_detection_iteration

    member = MembershipFactory(role="annotator", user__username="where-looked-boxes")
    project = member.project
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    rows = [([], [[0, 0.8, 0.2, 0.2, 0.2, 0.2]])]  # a red box where there is none
    iteration = make_detection_iteration(project, tags=("red", "green", "blue"), rows=rows)
    iteration.artifact.save("model.pt", ContentFile(detector_bytes["sure"]), save=True)
    image = iteration.images.get().image
    image.file.save("chelsea.jpg", ContentFile(_photo()), save=False)
    Image.objects.filter(pk=image.pk).update(file=image.file.name, width=451, height=300)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    login(member.user)
    url = reverse("labeling:image-boxes", args=[project.id, image.id])
    page.goto(f"{url}?mispredicted={iteration.id}&threshold=0.5&overlap=0.5")
    page.get_by_test_id("where-looked-run").click()
    toggle = page.get_by_test_id("where-looked-toggle")
    expect(toggle).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("where-looked-caption")).to_contain_text("for its top box")
    overlay = page.locator("svg.box-canvas image.where-looked-overlay")
    expect(overlay).to_have_attribute("display", "inline")
    assert overlay.get_attribute("width") == "451" and overlay.get_attribute("height") == "300"
    shot(page, "where-looked-box-editor")
    toggle.click()
    expect(overlay).to_have_attribute("display", "none")
    assert not problems, problems
