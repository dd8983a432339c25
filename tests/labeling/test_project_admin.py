"""Who may create a project (LOUPE_PROJECT_CREATORS); deleting one: typed name, worker, files."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from labeling.models import Image, Project
from labeling.services.projects import create_project
from project.errors import Forbidden
from tests.factories import ImageFactory, MembershipFactory, UserFactory
from tests.training.conftest import make_iteration
from tests.worker import wait_for
from training.models import Iteration

NEW = {"name": "Birds", "kind": "multiclass", "domain": "general_compact"}


@pytest.mark.django_db
def test_by_default_only_staff_may_create_projects_in_the_service(settings):
    assert settings.LOUPE_PROJECT_CREATORS == "staff"
    with pytest.raises(Forbidden):
        create_project(by=UserFactory(), name="Birds", kind="multiclass")
    assert create_project(by=UserFactory(is_staff=True), name="Birds", kind="multiclass").pk
    assert create_project(by=UserFactory(is_superuser=True), name="Cats", kind="multiclass").pk


@pytest.mark.django_db
def test_a_non_staff_user_cannot_create_a_project_by_the_api_or_the_page(client, api_client):
    user = UserFactory()
    api_client.force_authenticate(user)
    response = api_client.post("/api/projects/", NEW, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    client.force_login(user)
    assert client.get(reverse("labeling:project-create")).status_code == 403
    response = client.post(reverse("labeling:project-create"), NEW)
    assert response.status_code == 403
    assert "reserved to this installation" in response.content.decode()
    assert not Project.objects.exists()


@pytest.mark.django_db
def test_the_project_list_offers_new_project_only_to_creators(client):
    client.force_login(UserFactory())
    html = client.get(reverse("labeling:project-list")).content.decode()
    assert 'data-testid="new-project"' not in html
    assert "admin to add you" in html
    client.force_login(UserFactory(is_staff=True))
    assert (
        'data-testid="new-project"' in client.get(reverse("labeling:project-list")).content.decode()
    )


@pytest.mark.django_db
def test_everyone_may_create_projects_when_the_setting_says_so(api_client, settings):
    settings.LOUPE_PROJECT_CREATORS = "everyone"
    api_client.force_authenticate(UserFactory())
    assert api_client.post("/api/projects/", NEW, format="json").status_code == 201


@pytest.mark.django_db
def test_an_unknown_setting_value_allows_only_superusers(api_client, settings):
    settings.LOUPE_PROJECT_CREATORS = "stafff"
    api_client.force_authenticate(UserFactory(is_staff=True))
    assert api_client.post("/api/projects/", NEW, format="json").status_code == 403


@pytest.mark.django_db
def test_deleting_needs_the_projects_exact_name(client):
    admin = MembershipFactory(role="admin", project__name="Fruit")
    client.force_login(admin.user)
    url = reverse("labeling:project-delete", args=[admin.project_id])
    page = client.get(url)
    assert page.status_code == 200 and "Type the project's name" in page.content.decode()
    response = client.post(url, {"confirm_name": "fruit"})
    assert response.status_code == 422
    assert "exactly to confirm" in response.content.decode()
    assert Project.objects.filter(pk=admin.project_id).exists()


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
@pytest.mark.django_db
def test_only_admins_may_delete_a_project(client, role):
    member = MembershipFactory(role=role, project__name="Fruit")
    client.force_login(member.user)
    url = reverse("labeling:project-delete", args=[member.project_id])
    assert client.post(url, {"confirm_name": "Fruit"}).status_code == 403
    assert Project.objects.filter(pk=member.project_id).exists()


def test_deleting_a_project_removes_its_rows_and_a_worker_removes_its_files(
    celery_worker_redis, client
):
    admin = MembershipFactory(role="admin", project__name="Fruit")
    project = admin.project
    images = [ImageFactory(project=project) for _ in range(3)]
    iteration = make_iteration(project, rows=[([0], [0.9, 0.1])])
    iteration.artifact.save("model.pt", __import__("io").BytesIO(b"weights"), save=True)
    names = [image.file.name for image in images] + [iteration.artifact.name]
    names += [image.file.name for image in Image.objects.filter(project=project)]
    # Files no row names: the serving file, a where-looked map, a dataset export job's zip.
    names += [
        default_storage.save(f"iterations/{iteration.pk}/model.serving.zip", ContentFile(b"s")),
        default_storage.save(f"{iteration.saliency_folder}/i1.png", ContentFile(b"map")),
        default_storage.save(f"exports/{project.pk}/job/fruit.zip", ContentFile(b"zip")),
    ]
    assert all(default_storage.exists(name) for name in names)
    keep = ImageFactory()  # another project's image stays
    kept_export = default_storage.save(f"exports/{keep.project_id}/job/x.zip", ContentFile(b"z"))

    client.force_login(admin.user)
    response = client.post(
        reverse("labeling:project-delete", args=[project.id]), {"confirm_name": "Fruit"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("labeling:project-list")
    assert not Project.objects.filter(pk=project.id).exists()
    assert not Iteration.objects.filter(pk=iteration.pk).exists()
    assert not Image.objects.filter(project_id=project.id).exists()
    wait_for(
        lambda: not any(default_storage.exists(name) for name in names),
        timeout_s=30,
        what="the worker to delete the project's files",
    )
    assert default_storage.exists(keep.file.name) and default_storage.exists(kept_export)
