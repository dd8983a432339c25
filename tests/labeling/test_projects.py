import pytest

from labeling.models import Membership, Project, Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_creating_a_project_makes_its_creator_admin(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    response = client.post(
        "/projects/new/", {"name": "Fruit", "kind": "multilabel", "domain": "general_compact"}
    )
    project = Project.objects.get(name="Fruit")
    assert response.status_code == 302
    assert project.kind == Project.Kind.MULTILABEL
    assert Membership.objects.get(project=project, user=user).role == Role.ADMIN


def test_project_list_shows_only_projects_the_user_is_a_member_of(client, project, users):
    client.force_login(users["non_member"])
    assert project.name not in client.get("/").content.decode()
    client.force_login(users["annotator"])
    assert project.name in client.get("/").content.decode()


def test_project_without_name_is_refused_with_422(client):
    client.force_login(UserFactory(is_staff=True))
    response = client.post(
        "/projects/new/", {"name": " ", "kind": "multiclass", "domain": "general_compact"}
    )
    assert response.status_code == 422
    assert not Project.objects.exists()
