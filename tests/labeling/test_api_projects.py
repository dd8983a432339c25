"""REST API: projects, tags, members and token auth, through HTTP with database checks."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from labeling.models import ImageTag, Membership, Project, Role, Tag
from tests.factories import (
    ImageFactory,
    ImageTagFactory,
    MembershipFactory,
    ProjectFactory,
    TagFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def as_user(api_client):
    def login(user):
        api_client.force_authenticate(user=user)
        return api_client

    return login


# --- Token auth ------------------------------------------------------------------------------


def test_token_from_auth_endpoint_authenticates_api_requests(api_client, project, users):
    response = api_client.post(
        "/api/auth/token/", {"username": "admin-user", "password": "password123"}
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert Token.objects.get(key=token).user == users["admin"]

    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    listing = api_client.get("/api/projects/")
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()] == [project.id]


def test_wrong_token_is_401_with_code_and_message(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = api_client.get("/api/projects/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert response.json()["message"].endswith(".")


def test_anonymous_api_request_is_401(api_client, project):
    response = api_client.get(f"/api/projects/{project.id}/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- Projects --------------------------------------------------------------------------------


def test_project_list_shows_visible_projects_with_the_callers_role(as_user, project, users):
    ProjectFactory(name="Someone else's")
    response = as_user(users["reviewer"]).get("/api/projects/")
    assert response.status_code == 200
    assert response.json() == [
        {
            "id": project.id,
            "name": project.name,
            "description": "",
            "kind": "multiclass",
            "domain": "general_compact",
            "created": response.json()[0]["created"],
            "role": "reviewer",
        }
    ]


def test_superuser_sees_every_project_as_admin(as_user, project):
    ProjectFactory()
    root = UserFactory(is_superuser=True)
    response = as_user(root).get("/api/projects/")
    assert len(response.json()) == 2
    assert {p["role"] for p in response.json()} == {"admin"}


def test_create_project_makes_the_caller_admin(as_user):
    user = UserFactory(is_staff=True)
    response = as_user(user).post(
        "/api/projects/", {"name": "Birds", "kind": "multilabel"}, format="json"
    )
    assert response.status_code == 201
    project = Project.objects.get(pk=response.json()["id"])
    assert (project.name, project.kind, project.owner) == ("Birds", "multilabel", user)
    assert response.json()["role"] == "admin"
    assert Membership.objects.get(project=project, user=user).role == Role.ADMIN


def test_create_project_with_unknown_kind_is_400(as_user):
    response = as_user(UserFactory(is_staff=True)).post(
        "/api/projects/", {"name": "X", "kind": "video"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "kind" in response.json()["errors"]
    assert not Project.objects.exists()


def test_create_project_with_blank_name_is_refused(as_user):
    response = as_user(UserFactory(is_staff=True)).post(
        "/api/projects/", {"name": "   ", "kind": "detection"}, format="json"
    )
    assert response.status_code in (400, 422)
    assert not Project.objects.exists()


def test_admin_renames_project_and_changes_domain(as_user, project, users):
    response = as_user(users["admin"]).patch(
        f"/api/projects/{project.id}/", {"name": "Renamed", "domain": "general"}, format="json"
    )
    assert response.status_code == 200
    project.refresh_from_db()
    assert (project.name, project.domain) == ("Renamed", "general")
    assert response.json()["name"] == "Renamed"


def test_project_kind_cannot_be_changed_through_patch(as_user, project, users):
    as_user(users["admin"]).patch(
        f"/api/projects/{project.id}/", {"kind": "detection"}, format="json"
    )
    project.refresh_from_db()
    assert project.kind == "multiclass"


def test_reviewer_cannot_rename_project(as_user, project, users):
    response = as_user(users["reviewer"]).patch(
        f"/api/projects/{project.id}/", {"name": "Mine"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    project.refresh_from_db()
    assert project.name != "Mine"


def test_non_member_gets_404_for_an_existing_project(as_user, project, users):
    response = as_user(users["non_member"]).get(f"/api/projects/{project.id}/")
    missing = as_user(users["non_member"]).get("/api/projects/999999/")
    assert response.status_code == missing.status_code == 404
    assert response.json() == missing.json()


def test_admin_deletes_project(as_user, project, users):
    response = as_user(users["admin"]).delete(f"/api/projects/{project.id}/")
    assert response.status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()


# --- Tags ------------------------------------------------------------------------------------


def test_tag_list_has_image_counts(as_user, project, users):
    cat, dog = TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")
    for _ in range(3):
        ImageTagFactory(image=ImageFactory(project=project), tag=cat)
    response = as_user(users["annotator"]).get(f"/api/projects/{project.id}/tags/")
    assert response.status_code == 200
    assert [(t["id"], t["name"], t["image_count"]) for t in response.json()] == [
        (cat.id, "cat", 3),
        (dog.id, "dog", 0),
    ]


def test_admin_creates_regular_and_negative_tags(as_user, project, users):
    client = as_user(users["admin"])
    regular = client.post(f"/api/projects/{project.id}/tags/", {"name": "apple"}, format="json")
    negative = client.post(
        f"/api/projects/{project.id}/tags/", {"name": "Negative", "kind": "negative"}, format="json"
    )
    assert regular.status_code == negative.status_code == 201
    assert negative.json()["kind"] == "negative"
    assert list(project.tags.values_list("name", "kind")) == [
        ("apple", "regular"),
        ("Negative", "negative"),
    ]


def test_duplicate_tag_name_is_422(as_user, project, users):
    TagFactory(project=project, name="apple")
    response = as_user(users["admin"]).post(
        f"/api/projects/{project.id}/tags/", {"name": "Apple"}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["message"] == "There is already a tag called 'Apple'."
    assert project.tags.count() == 1


def test_second_negative_tag_is_refused(as_user, project, users):
    TagFactory(project=project, name="none", kind=Tag.Kind.NEGATIVE)
    response = as_user(users["admin"]).post(
        f"/api/projects/{project.id}/tags/", {"name": "nothing", "kind": "negative"}, format="json"
    )
    assert response.status_code == 422
    assert project.tags.count() == 1


def test_annotator_cannot_create_tags(as_user, project, users):
    response = as_user(users["annotator"]).post(
        f"/api/projects/{project.id}/tags/", {"name": "apple"}, format="json"
    )
    assert response.status_code == 403
    assert not project.tags.exists()


def test_admin_renames_tag(as_user, project, users):
    tag = TagFactory(project=project, name="aple")
    response = as_user(users["admin"]).patch(
        f"/api/projects/{project.id}/tags/{tag.id}/", {"name": "apple"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["name"] == "apple"
    tag.refresh_from_db()
    assert tag.name == "apple"


def test_tag_of_another_project_is_404(as_user, project, users):
    other = TagFactory()
    response = as_user(users["admin"]).get(f"/api/projects/{project.id}/tags/{other.id}/")
    assert response.status_code == 404
    assert response.json()["message"] == "This tag does not exist in this project."


def test_deleting_a_tag_untags_images_left_without_labels(as_user, project, users):
    tag = TagFactory(project=project)
    image = ImageFactory(project=project, is_tagged=True)
    ImageTagFactory(image=image, tag=tag)
    response = as_user(users["admin"]).delete(f"/api/projects/{project.id}/tags/{tag.id}/")
    assert response.status_code == 204
    assert not Tag.objects.filter(pk=tag.pk).exists()
    assert not ImageTag.objects.exists()
    image.refresh_from_db()
    assert image.is_tagged is False


# --- Members ---------------------------------------------------------------------------------


def test_any_member_lists_members(as_user, project, users):
    response = as_user(users["annotator"]).get(f"/api/projects/{project.id}/members/")
    assert response.status_code == 200
    assert [(m["user"]["username"], m["role"]) for m in response.json()] == [
        ("admin-user", "admin"),
        ("annotator-user", "annotator"),
        ("reviewer-user", "reviewer"),
    ]


def test_admin_adds_existing_user_as_member(as_user, project, users):
    response = as_user(users["admin"]).post(
        f"/api/projects/{project.id}/members/",
        {"username": "outsider", "role": "reviewer"},
        format="json",
    )
    assert response.status_code == 201
    assert Membership.objects.get(project=project, user=users["non_member"]).role == "reviewer"


def test_admin_creates_an_account_when_adding_with_password(as_user, project, users, client):
    response = as_user(users["admin"]).post(
        f"/api/projects/{project.id}/members/",
        {"username": "newbie", "role": "annotator", "password": "s3cret-pass"},
        format="json",
    )
    assert response.status_code == 201
    user = User.objects.get(username="newbie")
    assert user.check_password("s3cret-pass")
    assert Membership.objects.get(project=project, user=user).role == "annotator"


def test_adding_unknown_user_without_password_is_refused(as_user, project, users):
    response = as_user(users["admin"]).post(
        f"/api/projects/{project.id}/members/",
        {"username": "ghost", "role": "annotator"},
        format="json",
    )
    assert response.status_code == 404
    assert "Give a password" in response.json()["message"]
    assert not User.objects.filter(username="ghost").exists()


def test_adding_a_member_twice_is_422(as_user, project, users):
    response = as_user(users["admin"]).post(
        f"/api/projects/{project.id}/members/",
        {"username": "reviewer-user", "role": "admin"},
        format="json",
    )
    assert response.status_code == 422
    assert Membership.objects.get(project=project, user=users["reviewer"]).role == "reviewer"


def test_admin_changes_a_members_role(as_user, project, users):
    membership = Membership.objects.get(project=project, user=users["annotator"])
    response = as_user(users["admin"]).patch(
        f"/api/projects/{project.id}/members/{membership.id}/", {"role": "reviewer"}, format="json"
    )
    assert response.status_code == 200
    membership.refresh_from_db()
    assert membership.role == "reviewer"


def test_last_admin_cannot_be_demoted_or_removed(as_user, project, users):
    membership = Membership.objects.get(project=project, user=users["admin"])
    client = as_user(users["admin"])
    demote = client.patch(
        f"/api/projects/{project.id}/members/{membership.id}/", {"role": "annotator"}, format="json"
    )
    remove = client.delete(f"/api/projects/{project.id}/members/{membership.id}/")
    assert demote.status_code == remove.status_code == 422
    assert demote.json()["message"] == "A project keeps at least one admin."
    membership.refresh_from_db()
    assert membership.role == "admin"


def test_an_admin_can_leave_when_another_admin_remains(as_user, project, users):
    MembershipFactory(project=project, role=Role.ADMIN)
    membership = Membership.objects.get(project=project, user=users["admin"])
    response = as_user(users["admin"]).delete(
        f"/api/projects/{project.id}/members/{membership.id}/"
    )
    assert response.status_code == 204
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_membership_of_another_project_is_404(as_user, project, users):
    other = MembershipFactory()
    response = as_user(users["admin"]).delete(f"/api/projects/{project.id}/members/{other.id}/")
    assert response.status_code == 404
    assert Membership.objects.filter(pk=other.pk).exists()


def test_reviewer_cannot_add_members(as_user, project, users):
    response = as_user(users["reviewer"]).post(
        f"/api/projects/{project.id}/members/",
        {"username": "outsider", "role": "admin"},
        format="json",
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(user=users["non_member"]).exists()
