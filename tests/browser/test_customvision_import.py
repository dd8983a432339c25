"""The Custom Vision import page in real Chromium: a project creator copies a project from a
live server speaking the Custom Vision Training API, a real worker does it, the page reports."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from customvision.ids import Kind, to_uuid
from labeling.models import ImageTag, Membership, Project, Role
from labeling.services.api_keys import create_api_key
from tests.conftest import make_image
from tests.factories import ImageFactory, ProjectFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
SHOTS = os.environ.get("LOUPE_SCREENSHOTS")


def test_a_creator_imports_a_project_from_the_page(page, login, live_server, celery_worker_redis):
    owner = UserFactory(username="mover", is_staff=True)
    key = create_api_key(user=owner, kind="training", name="import").secret
    source = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Bottles")
    Membership.objects.create(project=source, user=owner, role=Role.ADMIN)
    glass = TagFactory(project=source, name="glass")
    for number in range(3):
        image = ImageFactory(project=source, content=make_image(12, 12, (number * 50, 9, 9)))
        ImageTag.objects.create(image=image, tag=glass)
    login(owner)
    page.get_by_test_id("import-customvision").click()
    page.get_by_test_id("cv-import-endpoint").fill(live_server.url)
    page.get_by_test_id("cv-import-key").fill(key)
    page.get_by_test_id("cv-import-project-id").fill(to_uuid(Kind.PROJECT, source.pk))
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "cv-import-form.png"), full_page=True)
    page.get_by_test_id("cv-import-project-id").press("Enter")
    status = page.get_by_test_id("cv-import-status")
    expect(status).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.get_by_test_id("cv-import-message")).to_have_text("Copied 3 of 3 images.")
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "cv-import-done.png"), full_page=True)
    page.get_by_test_id("cv-import-project").click()
    expect(page.get_by_test_id("count-all")).to_have_text("3")
