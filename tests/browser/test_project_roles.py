"""Roles in real Chromium: why a member cannot train, who sees "New project", deleting a project."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from labeling.models import Project
from tests.factories import MembershipFactory, ProjectFactory, UserFactory


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/{name}.png", full_page=True)


@pytest.mark.parametrize(
    ("role", "article"), [("reviewer", "a reviewer"), ("annotator", "an annotator")]
)
@pytest.mark.django_db(transaction=True)
def test_members_below_admin_see_why_they_cannot_train(page, login, role, article):
    project = ProjectFactory(name="Birds")
    MembershipFactory(project=project, role="admin", user__username="alice")
    member = MembershipFactory(project=project, role=role, user__username=f"{role}-b").user
    login(member)
    page.goto(reverse("labeling:project-detail", args=[project.id]))
    page.get_by_test_id("tab-train").click()
    reason = page.get_by_test_id("train-not-allowed-reason")
    expect(reason).to_contain_text("Only the project's admins can start a training")
    expect(reason).to_contain_text(f"you are {article} in this project")
    expect(reason).to_contain_text("Ask alice")
    expect(page.get_by_test_id("train-button")).to_have_count(0)
    shot(page, f"train-{role}")


@pytest.mark.django_db(transaction=True)
def test_new_project_is_not_offered_to_a_user_who_may_not_create(page, login):
    member = MembershipFactory(role="admin", user__username="plain-admin").user
    login(member)
    expect(page.get_by_test_id("project-card")).to_have_count(1)
    expect(page.get_by_test_id("new-project")).to_have_count(0)
    shot(page, "project-list-not-staff")


@pytest.mark.django_db(transaction=True)
def test_new_project_is_offered_to_staff(page, login):
    login(UserFactory(username="staff-user", is_staff=True))
    page.get_by_test_id("new-project").click()
    expect(page).to_have_url(reverse("labeling:project-create"))
    expect(page.get_by_test_id("domain-help")).not_to_contain_text("export")
    shot(page, "project-create")


@pytest.mark.django_db(transaction=True)
def test_admin_deletes_a_project_after_typing_its_name(page, login):
    admin = MembershipFactory(role="admin", project__name="Old birds", user__username="del-admin")
    login(admin.user)
    page.goto(reverse("labeling:project-settings", args=[admin.project_id]))
    page.get_by_test_id("delete-project").click()
    page.get_by_test_id("confirm-name").fill("Old bird")
    page.get_by_test_id("confirm-delete-project").click()
    expect(page.get_by_test_id("delete-error")).to_contain_text("exactly to confirm")
    assert Project.objects.filter(pk=admin.project_id).exists()
    shot(page, "project-delete-refused")
    page.get_by_test_id("confirm-name").fill("Old birds")
    page.get_by_test_id("confirm-delete-project").click()
    expect(page).to_have_url(reverse("labeling:project-list"))
    expect(page.get_by_text("Project “Old birds” deleted.")).to_be_visible()
    assert not Project.objects.filter(pk=admin.project_id).exists()
