"""Publish, unpublish, make default, rename, delete: admins only, with their rules."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.factories import ProjectFactory
from tests.training.conftest import make_iteration
from training.models import Iteration

pytestmark = pytest.mark.django_db


def act(client, iteration, action, **data):
    url = reverse(f"training:iteration-{action}", args=[iteration.project_id, iteration.id])
    return client.post(url, data)


def test_admin_publishes_and_unpublishes_a_completed_iteration(client_for, project, users):
    iteration = make_iteration(project)
    client = client_for(users["admin"])
    response = act(client, iteration, "publish", name="  production ")
    assert response.status_code == 302
    iteration.refresh_from_db()
    assert iteration.published_name == "production"
    assert act(client, iteration, "unpublish").status_code == 302
    iteration.refresh_from_db()
    assert iteration.published_name == ""


def test_publish_name_is_unique_per_project(client_for, project, users):
    first = make_iteration(project, number=1, published_name="prod")
    second = make_iteration(project, number=2)
    other_project = make_iteration(ProjectFactory(), published_name="prod")
    client = client_for(users["admin"])
    response = act(client, second, "publish", name="prod", HTTP_HX_REQUEST="true")
    response = client.post(
        reverse("training:iteration-publish", args=[project.id, second.id]),
        {"name": "prod"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    assert "Iteration 1 is already published as “prod”" in response.content.decode()
    second.refresh_from_db()
    assert second.published_name == ""
    assert first.published_name == other_project.published_name == "prod"


def test_only_completed_iterations_can_be_published_or_default(client_for, project, users):
    failed = make_iteration(project, status=Iteration.Status.FAILED)
    client = client_for(users["admin"])
    response = client.post(
        reverse("training:iteration-publish", args=[project.id, failed.id]),
        {"name": "x"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    assert "Only a completed iteration can be published" in response.content.decode()
    response = client.post(
        reverse("training:iteration-default", args=[project.id, failed.id]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 422
    failed.refresh_from_db()
    assert not failed.published_name and not failed.is_default


def test_make_default_moves_the_default(client_for, project, users):
    first = make_iteration(project, number=1, is_default=True)
    second = make_iteration(project, number=2)
    assert act(client_for(users["admin"]), second, "default").status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_default and not first.is_default


def test_rename_changes_the_name_and_refuses_an_empty_one(client_for, project, users):
    iteration = make_iteration(project)
    client = client_for(users["admin"])
    assert act(client, iteration, "rename", name="Baseline").status_code == 302
    iteration.refresh_from_db()
    assert iteration.name == "Baseline"
    response = client.post(
        reverse("training:iteration-rename", args=[project.id, iteration.id]),
        {"name": "  "},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    iteration.refresh_from_db()
    assert iteration.name == "Baseline"


def test_delete_is_refused_while_published_and_removes_rows_and_model(client_for, project, users):
    iteration = make_iteration(
        project, published_name="prod", rows=[([0], [0.9, 0.1]), ([1], [0.2, 0.8])]
    )
    name = default_storage.save(f"iterations/{iteration.pk}/model.pt", ContentFile(b"model"))
    Iteration.objects.filter(pk=iteration.pk).update(artifact=name)
    client = client_for(users["admin"])

    response = client.post(
        reverse("training:iteration-delete", args=[project.id, iteration.id]),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    assert "Unpublish it before deleting it." in response.content.decode()
    assert Iteration.objects.filter(pk=iteration.pk).exists()

    act(client, iteration, "unpublish")
    assert act(client, iteration, "delete").status_code == 302
    assert not Iteration.objects.filter(pk=iteration.pk).exists()
    assert not default_storage.exists(name)
    assert project.images.count() == 2  # the training images stay


def test_delete_is_refused_while_training(client_for, project, users):
    iteration = make_iteration(project, status=Iteration.Status.TRAINING)
    response = client_for(users["admin"]).post(
        reverse("training:iteration-delete", args=[project.id, iteration.id]),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422
    assert "is training" in response.content.decode()
    assert Iteration.objects.filter(pk=iteration.pk).exists()


@pytest.mark.parametrize(
    "action", ["publish", "unpublish", "default", "rename", "delete", "threshold"]
)
@pytest.mark.parametrize(
    ("role", "status"), [("reviewer", 403), ("annotator", 403), ("non_member", 404)]
)
def test_iteration_actions_need_an_admin(client_for, project, users, action, role, status):
    iteration = make_iteration(project, published_name="prod" if action == "unpublish" else "")
    before = Iteration.objects.filter(pk=iteration.pk).values().get()
    response = act(client_for(users[role]), iteration, action, name="renamed", threshold=0.3)
    assert response.status_code == status
    assert Iteration.objects.filter(pk=iteration.pk).values().get() == before


def test_iteration_of_another_project_is_not_found(client_for, project, users):
    foreign = make_iteration(ProjectFactory())
    url = reverse("training:iteration-publish", args=[project.id, foreign.id])
    assert client_for(users["admin"]).post(url, {"name": "x"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.published_name == ""


def test_threshold_is_saved_per_iteration(client_for, project, users):
    iteration = make_iteration(project)
    other = make_iteration(project, number=2)
    client = client_for(users["admin"])
    response = client.post(
        reverse("training:iteration-threshold", args=[project.id, iteration.id]),
        {"threshold": "0.35"},
        HTTP_X_REQUESTED_WITH="fetch",
    )
    assert response.status_code == 204
    iteration.refresh_from_db()
    other.refresh_from_db()
    assert iteration.suggested_threshold == 0.35 and other.suggested_threshold == 0.5
    response = client.post(
        reverse("training:iteration-threshold", args=[project.id, iteration.id]),
        {"threshold": "1.5"},
    )
    assert response.status_code == 422
    iteration.refresh_from_db()
    assert iteration.suggested_threshold == 0.35


def test_iteration_list_is_newest_first_with_headline_figures(client_for, project, users):
    make_iteration(project, number=1, metrics={"precision": 0.5, "recall": 0.25, "map": 0.75})
    make_iteration(
        project,
        number=2,
        status=Iteration.Status.FAILED,
        failure_reason="dataset_corrupt",
        failure_message="The image “x.png” could not be read.",
    )
    response = client_for(users["annotator"]).get(
        reverse("training:iteration-list", args=[project.id])
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index('data-testid="iteration-2"') < html.index('data-testid="iteration-1"')
    assert "50%" in html and "25%" in html and "75%" in html
    assert "Dataset corrupt: The image “x.png” could not be read." in html
    assert "Publish</button>" not in html  # annotators see no admin actions


def test_delete_removes_every_file_the_iteration_owns_and_nothing_else(client_for, project, users):
    from training.models import ModelExport
    from training.services.saliency import folder

    iteration = make_iteration(project)
    owned = [
        default_storage.save(f"iterations/{iteration.pk}/model.pt", ContentFile(b"model")),
        default_storage.save(f"iterations/{iteration.pk}/model.serving.zip", ContentFile(b"s")),
        default_storage.save(f"iterations/{iteration.pk}/train_embeddings.npy", ContentFile(b"e")),
        default_storage.save(f"{folder(iteration)}/u{'0' * 64}.png", ContentFile(b"map")),
        default_storage.save(f"{folder(iteration)}/uploads/{'0' * 64}", ContentFile(b"jpeg")),
        # An export stored where exports went before they moved into the iteration's folder.
        default_storage.save(f"exports/{iteration.pk}/7/old.zip", ContentFile(b"zip")),
    ]
    Iteration.objects.filter(pk=iteration.pk).update(artifact=owned[0])
    ModelExport.objects.create(iteration=iteration, platform="ONNX", file=owned[-1])
    # Not the iteration's: another iteration's folder, a dataset export of a project whose id
    # happens to be the iteration's.
    others = [
        default_storage.save(f"iterations/{iteration.pk + 1}/model.pt", ContentFile(b"other")),
        default_storage.save(f"exports/{iteration.pk}/job-1/status.json", ContentFile(b"{}")),
    ]
    assert act(client_for(users["admin"]), iteration, "delete").status_code == 302
    assert [name for name in owned if default_storage.exists(name)] == []
    assert all(default_storage.exists(name) for name in others)
