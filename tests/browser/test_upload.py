"""Upload in real Chromium: 30 images with a tag, a progress bar that reaches 100%, the report."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling.models import Image, Project
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.worker import wait_for

# Records every value the progress bar shows, so the test sees it move, not just end at 100.
WATCH_PROGRESS = """
() => {
  const bar = document.querySelector('[data-testid=upload-progress]');
  window.progressSeen = [];
  new MutationObserver(() => window.progressSeen.push(Number(bar.getAttribute('aria-valuenow'))))
    .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
}
"""


@pytest.fixture
def member_project(users) -> Project:
    project = ProjectFactory(kind=Project.Kind.MULTILABEL, name="Fruit")
    MembershipFactory(project=project, user=users["annotator"])
    return project


def test_upload_30_images_with_a_tag_shows_progress_and_report(
    page, login, users, member_project, celery_worker_redis
):
    TagFactory(project=member_project, name="other")
    apple = TagFactory(project=member_project, name="apple")
    login(users["annotator"])
    page.goto(f"/projects/{member_project.pk}/")
    page.get_by_test_id("tab-upload").click()
    page.wait_for_url(f"**/projects/{member_project.pk}/upload/")

    files = [
        {
            "name": f"fruit{i:02d}.jpg",
            "mimeType": "image/jpeg",
            "buffer": make_image(320, 260, color=(i * 8, 255 - i * 8, 90), fmt="JPEG"),
        }
        for i in range(30)
    ]
    page.get_by_test_id("upload-input").set_input_files(files)
    expect(page.get_by_test_id("upload-selection")).to_contain_text("30 files chosen")
    page.get_by_test_id("upload-tag-apple").locator("input").check()
    page.evaluate(WATCH_PROGRESS)
    page.get_by_test_id("upload-submit").click()

    expect(page.get_by_test_id("upload-summary")).to_have_text(
        "30 accepted, 0 rejected.", timeout=60_000
    )
    # Sent by the script through the API (the no-JavaScript fallback would reload the page).
    expect(page.get_by_test_id("upload-summary")).to_have_attribute("data-done", "true")
    expect(page.get_by_test_id("upload-progress")).to_have_attribute("aria-valuenow", "100")
    seen = page.evaluate("window.progressSeen")
    assert seen == sorted(seen), seen  # never goes backwards
    assert any(0 < value < 100 for value in seen), seen  # moved through the queue (2 requests)
    assert page.get_by_test_id("upload-results").locator("li[data-outcome=accepted]").count() == 30

    images = Image.objects.filter(project=member_project)
    assert images.count() == 30
    assert sorted(images.values_list("original_name", flat=True)) == [f["name"] for f in files]
    for image in images:
        assert list(image.image_tags.values_list("tag_id", flat=True)) == [apple.pk]
    wait_for(
        lambda: not images.filter(thumbnail="").exists(),
        timeout_s=60,
        what="the worker to make 30 thumbnails",
    )


def test_rejected_files_are_listed_with_their_reason(
    page, login, users, member_project, celery_worker_redis
):
    login(users["annotator"])
    page.goto(f"/projects/{member_project.pk}/upload/")
    page.get_by_test_id("upload-input").set_input_files(
        [
            {"name": "ok.png", "mimeType": "image/png", "buffer": make_image(300, 300)},
            {"name": "small.png", "mimeType": "image/png", "buffer": make_image(40, 40)},
            {"name": "notes.png", "mimeType": "image/png", "buffer": b"just some text"},
        ]
    )
    page.get_by_test_id("upload-submit").click()
    summary = page.get_by_test_id("upload-summary")
    expect(summary).to_have_text("2 accepted (1 with warnings), 1 rejected.")
    results = page.get_by_test_id("upload-results")
    expect(results.locator("li[data-outcome=rejected]")).to_contain_text("notes.png")
    expect(results.locator("li[data-code=not_an_image]")).to_have_count(1)
    expect(results.locator("li[data-outcome=warning]")).to_contain_text("upscaled for training")
    assert member_project.images.count() == 2
