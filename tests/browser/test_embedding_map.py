"""The embedding map in real Chromium with the app's default settings: a lasso around one
cluster selects exactly its images, shows their thumbnails, and the keyboard picks the tag and
submits it; the database has the new labels. Hover shows an image's thumbnail, and the page
runs under the Content-Security-Policy without a violation."""

from __future__ import annotations

import os

import numpy as np
import pytest

from labeling.models import ImageTag, Role
from labeling.services.thumbnails import make_thumbnails
from tests.browser.test_accessibility import axe_violations
from tests.factories import (
    ImageFactory,
    ImageTagFactory,
    MembershipFactory,
    ProjectFactory,
    TagFactory,
)
from training.ml.backbones import get_backbone
from training.ml.features import FeatureCache
from training.services.embedding_map import current_map
from training.services.iterations import backbone_for
from training.tasks_map import lay_out_map

pytestmark = pytest.mark.django_db(transaction=True)

# The pixel position of every point, read from the chart the page drew (Chart.js's own API).
PIXELS = """() => {
  const chart = Chart.getChart(document.querySelector('[data-map-canvas]'));
  const box = document.querySelector('[data-map-lasso]').getBoundingClientRect();
  const out = {};
  for (const set of chart.data.datasets) for (const p of set.data) {
    out[p.id] = [box.left + chart.scales.x.getPixelForValue(p.x),
                 box.top + chart.scales.y.getPixelForValue(p.y)];
  }
  return out;
}"""


def _shot(page, name: str) -> None:
    folder = os.environ.get("LOUPE_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=f"{folder}/{name}.png", full_page=True)


@pytest.fixture
def clustered(settings, tmp_path):
    """A multiclass project: 3 clusters of 12 images (cached embeddings); the first untagged."""
    project = ProjectFactory(name="Fruit")
    annotator = MembershipFactory(project=project, role=Role.ANNOTATOR, user__username="ann").user
    apple, pear = (
        TagFactory(project=project, name="apple"),
        TagFactory(project=project, name="pear"),
    )
    images = [ImageFactory(project=project, width=24, height=24) for _ in range(36)]
    for image in images[12:24]:
        ImageTagFactory(image=image, tag=apple)
    for image in images[24:]:
        ImageTagFactory(image=image, tag=pear)
    make_thumbnails([i.pk for i in images])
    for image in images:
        image.refresh_from_db()
    rng = np.random.default_rng(1)
    dim = get_backbone(backbone_for(project)).feature_dim
    centres = rng.standard_normal((3, dim)) * 6
    vectors = np.repeat(centres, 12, axis=0) + rng.standard_normal((36, dim))
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    FeatureCache(tmp_path / "features").put_many(
        {i.sha256: v.astype(np.float32) for i, v in zip(images, vectors, strict=True)},
        backbone_for(project),
    )
    current_map(project)
    lay_out_map(project.pk)
    return project, annotator, images, apple, pear


def _lasso_around(page, points: list[list[float]]) -> None:
    """Drag a lasso: a rectangle 12 px outside the points' bounding box, corner to corner."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    left, right, top, bottom = min(xs) - 12, max(xs) + 12, min(ys) - 12, max(ys) + 12
    page.mouse.move(left, top)
    page.mouse.down()
    for x, y in [(right, top), (right, bottom), (left, bottom), (left, top + 1)]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()


def test_lasso_a_cluster_and_tag_it_with_the_keyboard(page, login, clustered):
    project, annotator, images, apple, pear = clustered
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda error: problems.append(f"uncaught {error}"))
    login(annotator)
    page.goto(f"/projects/{project.pk}/")
    page.get_by_test_id("tab-map").click()
    page.wait_for_url(f"**/projects/{project.pk}/map/")
    page.locator("[data-embedding-map][data-ready=true]").wait_for()
    assert page.get_by_test_id("map-status").inner_text() == "36 images."
    page.get_by_test_id("map-canvas").scroll_into_view_if_needed()
    pixels = page.evaluate(PIXELS)  # viewport coordinates, as the mouse takes them
    assert len(pixels) == 36

    # Hover over one image: its thumbnail shows, with links to it and to "more like this".
    x, y = pixels[str(images[13].pk)]
    page.mouse.move(x, y)
    hover = page.get_by_test_id("map-hover")
    hover.wait_for()
    assert hover.locator("img").get_attribute("src") == images[13].thumbnail.url
    assert f"Image {images[13].pk}: apple" in hover.inner_text()
    assert (
        hover.get_by_test_id("map-hover-like")
        .get_attribute("href")
        .endswith(f"?like={images[13].pk}")
    )

    # Lasso the untagged cluster (the first 12 images).
    _lasso_around(page, [pixels[str(i.pk)] for i in images[:12]])
    assert page.get_by_test_id("map-selection").locator("h3").inner_text() == "12 images selected"
    assert page.get_by_test_id("map-thumbs").get_by_test_id("map-thumb").count() == 12
    _shot(page, "embedding-map-selection")
    assert axe_violations(page) == []

    # The tag select has the focus: pick "pear" with the keyboard, Tab to the button, Enter.
    assert page.evaluate("document.activeElement.dataset.testid") == "map-tag-select"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.get_by_test_id("map-tag-select").input_value() == str(pear.pk)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "map-tag-submit"
    page.keyboard.press("Enter")
    notice = page.get_by_test_id("map-notice")
    notice.filter(has_text="Tagged 12 images").wait_for()
    assert notice.inner_text() == "Tagged 12 images “pear”."
    for image in images[:12]:
        assert list(ImageTag.objects.filter(image=image).values_list("tag_id", flat=True)) == [
            pear.pk
        ]
    assert ImageTag.objects.filter(tag=apple).count() == 12  # the other clusters untouched
    # The map recoloured from the server: no untagged points left.
    chart = "Chart.getChart(document.querySelector('[data-map-canvas]'))"
    legend = page.evaluate(f"{chart}.data.datasets.map(d => d.label)")
    assert "pear (24)" in legend and not any(label.startswith("Untagged") for label in legend)
    _shot(page, "embedding-map-tagged")
    assert problems == []
