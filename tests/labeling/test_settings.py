"""The project settings page: project, tags, members and API token, with and without htmx."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from labeling.models import ImageTag, Membership, Tag
from tests.factories import ImageFactory, ImageTagFactory, MembershipFactory, TagFactory

pytestmark = pytest.mark.django_db
User = get_user_model()
HTMX = {"HTTP_HX_REQUEST": "true"}


def settings_url(project, suffix: str = "") -> str:
    return f"/projects/{project.id}/settings/{suffix}"


# --- The page and who may see it -------------------------------------------------------------


def test_admin_sees_every_section_with_forms(client_for, project, users):
    TagFactory(project=project, name="apple")
    response = client_for(users["admin"]).get(settings_url(project))
    assert response.status_code == 200
    html = response.content.decode()
    for testid in (
        "project-section",
        "tags-section",
        "members-section",
        "token-section",
        "add-tag",
        "add-member",
        "save-project",
    ):
        assert f'data-testid="{testid}"' in html
    assert "apple" in html and "reviewer-user" in html


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_lower_roles_see_a_read_only_page(client_for, project, users, role):
    TagFactory(project=project, name="apple")
    response = client_for(users[role]).get(settings_url(project))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="read-only-note"' in html
    assert "apple" in html and "admin-user" in html
    for testid in ("add-tag", "add-member", "save-project", "rename-tag", "remove-member"):
        assert f'data-testid="{testid}"' not in html
    assert 'data-testid="regenerate-token"' in html  # their own token


def test_non_member_gets_404_and_anonymous_is_sent_to_login(client_for, project, users):
    assert client_for(users["non_member"]).get(settings_url(project)).status_code == 404
    response = client_for(None).get(settings_url(project))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_reviewer_cannot_write_any_section(client_for, project, users):
    tag = TagFactory(project=project, name="apple")
    membership = Membership.objects.get(project=project, user=users["annotator"])
    client = client_for(users["reviewer"])
    attempts = [
        (settings_url(project, "project/"), {"name": "X", "domain": "general"}),
        (settings_url(project, "tags/"), {"name": "pear", "kind": "regular"}),
        (settings_url(project, f"tags/{tag.id}/"), {"name": "X"}),
        (settings_url(project, f"tags/{tag.id}/delete/"), {}),
        (settings_url(project, "members/"), {"username": "outsider", "role": "admin"}),
        (settings_url(project, f"members/{membership.id}/"), {"role": "admin"}),
        (settings_url(project, f"members/{membership.id}/remove/"), {}),
    ]
    assert [client.post(url, data).status_code for url, data in attempts] == [403] * 7
    project.refresh_from_db()
    assert project.name != "X"
    assert list(project.tags.values_list("name", flat=True)) == ["apple"]
    assert project.memberships.count() == 3
    membership.refresh_from_db()
    assert membership.role == "annotator"


# --- Project ---------------------------------------------------------------------------------


def test_admin_edits_project_with_plain_post_and_is_redirected(client_for, project, users):
    response = client_for(users["admin"]).post(
        settings_url(project, "project/"),
        {"name": "Fruit", "description": "Apples and pears", "domain": "general"},
    )
    assert response.status_code == 302
    assert response["Location"] == settings_url(project)
    project.refresh_from_db()
    assert (project.name, project.description, project.domain) == (
        "Fruit",
        "Apples and pears",
        "general",
    )


def test_project_edit_over_htmx_answers_the_section(client_for, project, users):
    response = client_for(users["admin"]).post(
        settings_url(project, "project/"), {"name": "Fruit", "domain": "general"}, **HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="project-section"')
    assert "Project settings saved." in html
    project.refresh_from_db()
    assert project.name == "Fruit"


def test_blank_project_name_is_422_with_the_form_and_nothing_saved(client_for, project, users):
    old_name = project.name
    response = client_for(users["admin"]).post(
        settings_url(project, "project/"), {"name": "  ", "domain": "general"}, **HTMX
    )
    assert response.status_code == 422
    assert 'id="project-section"' in response.content.decode()
    project.refresh_from_db()
    assert (project.name, project.domain) == (old_name, "general_compact")


def test_invalid_input_without_htmx_rerenders_the_whole_page(client_for, project, users):
    response = client_for(users["admin"]).post(
        settings_url(project, "project/"), {"name": "X", "domain": "nonsense"}
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" in html and 'id="members-section"' in html
    assert "Select a valid choice" in html


# --- Tags ------------------------------------------------------------------------------------


def test_admin_adds_regular_and_negative_tags(client_for, project, users):
    client = client_for(users["admin"])
    assert (
        client.post(
            settings_url(project, "tags/"), {"name": "apple", "kind": "regular"}
        ).status_code
        == 302
    )
    response = client.post(
        settings_url(project, "tags/"), {"name": "Negative", "kind": "negative"}, **HTMX
    )
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<section id="tags-section"')
    assert list(project.tags.values_list("name", "kind")) == [
        ("apple", "regular"),
        ("Negative", "negative"),
    ]


def test_duplicate_tag_is_422_with_the_message(client_for, project, users):
    TagFactory(project=project, name="apple")
    response = client_for(users["admin"]).post(
        settings_url(project, "tags/"), {"name": "APPLE", "kind": "regular"}, **HTMX
    )
    assert response.status_code == 422
    assert "There is already a tag called" in response.content.decode()
    assert project.tags.count() == 1


def test_admin_renames_tag(client_for, project, users):
    tag = TagFactory(project=project, name="aple")
    response = client_for(users["admin"]).post(
        settings_url(project, f"tags/{tag.id}/"), {"name": "apple"}, **HTMX
    )
    assert response.status_code == 200
    tag.refresh_from_db()
    assert tag.name == "apple"


def test_rename_to_an_existing_name_is_422_and_shows_the_error_on_that_row(
    client_for, project, users
):
    TagFactory(project=project, name="apple")
    pear = TagFactory(project=project, name="pear")
    response = client_for(users["admin"]).post(
        settings_url(project, f"tags/{pear.id}/"), {"name": "apple"}, **HTMX
    )
    assert response.status_code == 422
    assert "There is already a tag called &#x27;apple&#x27;." in response.content.decode()
    pear.refresh_from_db()
    assert pear.name == "pear"


def test_delete_confirm_shows_how_many_images_carry_the_tag(client_for, project, users):
    tag = TagFactory(project=project, name="apple")
    for _ in range(3):
        ImageTagFactory(image=ImageFactory(project=project), tag=tag)
    client = client_for(users["admin"])
    partial = client.get(settings_url(project, f"tags/{tag.id}/delete/"), **HTMX)
    assert partial.status_code == 200
    html = partial.content.decode()
    assert 'data-testid="tag-delete-confirm"' in html and "<html" not in html
    assert "3 images carry it" in html
    page = client.get(settings_url(project, f"tags/{tag.id}/delete/"))
    assert "<html" in page.content.decode() and "3 images carry it" in page.content.decode()
    assert Tag.objects.filter(pk=tag.pk).exists()  # a GET never deletes


def test_confirmed_delete_removes_the_tag_and_its_labels(client_for, project, users):
    tag = TagFactory(project=project, name="apple")
    image = ImageFactory(project=project, is_tagged=True)
    ImageTagFactory(image=image, tag=tag)
    response = client_for(users["admin"]).post(settings_url(project, f"tags/{tag.id}/delete/"))
    assert response.status_code == 302
    assert not Tag.objects.filter(pk=tag.pk).exists()
    assert not ImageTag.objects.exists()
    image.refresh_from_db()
    assert image.is_tagged is False


def test_tag_of_another_project_is_404(client_for, project, users):
    other = TagFactory()
    response = client_for(users["admin"]).post(settings_url(project, f"tags/{other.id}/delete/"))
    assert response.status_code == 404
    assert Tag.objects.filter(pk=other.pk).exists()


# --- Members ---------------------------------------------------------------------------------


def test_admin_adds_an_existing_user(client_for, project, users):
    response = client_for(users["admin"]).post(
        settings_url(project, "members/"), {"username": "outsider", "role": "reviewer"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user=users["non_member"]).role == "reviewer"


def test_admin_creates_an_account_with_a_password(client_for, project, users):
    response = client_for(users["admin"]).post(
        settings_url(project, "members/"),
        {"username": "newbie", "role": "annotator", "password": "long-enough"},
        **HTMX,
    )
    assert response.status_code == 200
    assert "newbie" in response.content.decode()
    user = User.objects.get(username="newbie")
    assert user.check_password("long-enough")
    assert Membership.objects.get(project=project, user=user).role == "annotator"


def test_unknown_user_without_password_is_422_with_the_reason(client_for, project, users):
    response = client_for(users["admin"]).post(
        settings_url(project, "members/"), {"username": "ghost", "role": "annotator"}, **HTMX
    )
    assert response.status_code == 422
    assert "Give a password to create the account." in response.content.decode()
    assert not User.objects.filter(username="ghost").exists()


def test_short_password_for_a_new_account_is_refused(client_for, project, users):
    response = client_for(users["admin"]).post(
        settings_url(project, "members/"),
        {"username": "newbie", "role": "annotator", "password": "short"},
        **HTMX,
    )
    assert response.status_code == 422
    assert not User.objects.filter(username="newbie").exists()


def test_admin_changes_a_role(client_for, project, users):
    membership = Membership.objects.get(project=project, user=users["annotator"])
    response = client_for(users["admin"]).post(
        settings_url(project, f"members/{membership.id}/"), {"role": "reviewer"}, **HTMX
    )
    assert response.status_code == 200
    membership.refresh_from_db()
    assert membership.role == "reviewer"


def test_last_admin_cannot_demote_or_remove_themselves(client_for, project, users):
    membership = Membership.objects.get(project=project, user=users["admin"])
    client = client_for(users["admin"])
    demote = client.post(
        settings_url(project, f"members/{membership.id}/"), {"role": "annotator"}, **HTMX
    )
    remove = client.post(settings_url(project, f"members/{membership.id}/remove/"), **HTMX)
    assert demote.status_code == remove.status_code == 422
    assert "A project keeps at least one admin." in demote.content.decode()
    assert "A project keeps at least one admin." in remove.content.decode()
    membership.refresh_from_db()
    assert membership.role == "admin"


def test_admin_removes_a_member(client_for, project, users):
    membership = Membership.objects.get(project=project, user=users["reviewer"])
    response = client_for(users["admin"]).post(
        settings_url(project, f"members/{membership.id}/remove/")
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_membership_of_another_project_is_404(client_for, project, users):
    other = MembershipFactory()
    response = client_for(users["admin"]).post(settings_url(project, f"members/{other.id}/remove/"))
    assert response.status_code == 404
    assert Membership.objects.filter(pk=other.pk).exists()


# --- API token -------------------------------------------------------------------------------


def test_member_creates_and_regenerates_a_working_api_token(client_for, project, users, api_client):
    client = client_for(users["annotator"])
    response = client.post(settings_url(project, "token/"), **HTMX)
    assert response.status_code == 200
    first = Token.objects.get(user=users["annotator"]).key
    assert first in response.content.decode()
    assert first in client.get(settings_url(project)).content.decode()

    api_client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert api_client.get(f"/api/projects/{project.id}/").status_code == 200

    client.post(settings_url(project, "token/"))
    second = Token.objects.get(user=users["annotator"]).key
    assert second != first
    assert api_client.get(f"/api/projects/{project.id}/").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert api_client.get(f"/api/projects/{project.id}/").status_code == 200


def test_non_member_cannot_use_the_token_form_of_a_project(client_for, project, users):
    response = client_for(users["non_member"]).post(settings_url(project, "token/"))
    assert response.status_code == 404
    assert not Token.objects.filter(user=users["non_member"]).exists()
