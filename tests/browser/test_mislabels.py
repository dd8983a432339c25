"""The Health tab and the "Possible mislabels" queue in real Chromium, keyboard only, with the
app's default settings: A accepts the suggestion, K keeps the label, E opens the image."""

from __future__ import annotations

import os

import numpy as np
import pytest

from labeling.models import ImageTag, Role
from tests.browser.test_accessibility import axe_violations
from tests.factories import MembershipFactory, ProjectFactory
from tests.training.test_mislabels import scored_project
from training.ml.backbones import get_backbone
from training.ml.features import FeatureCache
from training.models import HealthReport, KeptLabel
from training.services.iterations import backbone_for
from training.tasks_health import check_health

pytestmark = pytest.mark.django_db(transaction=True)


def _shot(page, name: str) -> None:
    folder = os.environ.get("LOUPE_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=f"{folder}/{name}.png", full_page=True)


def test_work_through_the_mislabel_queue_with_the_keyboard(page, login, settings, tmp_path):
    project = ProjectFactory(name="Pets")
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER, user__username="rev").user
    _tags, images = scored_project(project, {3: 1, 25: 0, 30: 0})
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    dim = get_backbone(backbone_for(project)).feature_dim
    vectors = np.random.default_rng(0).standard_normal((len(images), dim)).astype(np.float32)
    FeatureCache(tmp_path / "features").put_many(
        {image.sha256: v for image, v in zip(images, vectors, strict=True)}, backbone_for(project)
    )
    HealthReport.objects.create(project=project)
    check_health(project.pk)

    login(reviewer)
    page.goto(f"/projects/{project.pk}/health/")
    assert page.get_by_test_id("health-images-per-tag").get_attribute("data-status") == "warn"
    _shot(page, "health")
    assert axe_violations(page) == []
    # A rule's link shows the gallery narrowed to the images that break it.
    page.get_by_test_id("health-link-images-per-tag").click()
    page.get_by_test_id("image-set").wait_for()
    assert (
        "Health check: Images per tag: 40 images" in page.get_by_test_id("image-set").inner_text()
    )
    _shot(page, "health-gallery")
    page.go_back()
    # To the queue by keyboard: focus the link and press Enter.
    assert page.get_by_test_id("mislabels-link").inner_text() == "Review 3 possible mislabels"
    page.get_by_test_id("mislabels-link").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/projects/{project.pk}/mislabels/")
    assert page.get_by_test_id("mislabel-count").inner_text() == "3"
    _shot(page, "mislabels")
    assert axe_violations(page) == []

    first = int(page.get_by_test_id("mislabel-current").get_attribute("data-image-id"))
    suggested = page.get_by_test_id("mislabel-suggested").inner_text()
    page.keyboard.press("a")  # accept
    page.wait_for_load_state()
    page.get_by_test_id("mislabel-count").filter(has_text="2").wait_for()
    assert list(ImageTag.objects.filter(image_id=first).values_list("tag__name", flat=True)) == [
        suggested
    ]

    second = int(page.get_by_test_id("mislabel-current").get_attribute("data-image-id"))
    given = page.get_by_test_id("mislabel-given").inner_text()
    page.keyboard.press("k")  # keep
    page.get_by_test_id("mislabel-count").filter(has_text="1").wait_for()
    assert KeptLabel.objects.filter(image_id=second).count() == 1
    assert list(ImageTag.objects.filter(image_id=second).values_list("tag__name", flat=True)) == [
        given
    ]

    third = int(page.get_by_test_id("mislabel-current").get_attribute("data-image-id"))
    assert {first, second, third} == {images[3].pk, images[25].pk, images[30].pk}
    page.keyboard.press("e")  # open the image in the tagging view
    page.wait_for_url(f"**/projects/{project.pk}/images/{third}/")
