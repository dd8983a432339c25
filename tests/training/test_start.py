"""Starting a training: who may, what is refused (each with a real dataset), what is snapshot."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Project
from tests.factories import ImageTagFactory, TagFactory
from tests.training.conftest import add_images
from training.models import Iteration, IterationImage, IterationTag
from training.services.iterations import start_iteration

pytestmark = pytest.mark.django_db


def post_train(client, project, **data):
    payload = {"training_type": "quick", "budget_minutes": 10, **data}
    return client.post(reverse("training:train", args=[project.id]), payload)


def test_admin_starts_a_quick_training_and_it_is_queued(client_for, project, users, build_dataset):
    build_dataset(project, {"red": 5, "green": 6})
    response = post_train(client_for(users["admin"]), project)
    assert response.status_code == 302
    iteration = Iteration.objects.get(project=project)
    assert iteration.status == Iteration.Status.QUEUED
    assert (iteration.number, iteration.name) == (1, "Iteration 1")
    assert iteration.training_type == "quick" and iteration.budget_s == 0
    assert iteration.backbone == "lite0-levels"  # general_compact
    assert iteration.created_by == users["admin"]
    assert iteration.task_id


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_members_below_admin_cannot_start_training(client_for, project, users, build_dataset, role):
    build_dataset(project, {"red": 5, "green": 5})
    assert post_train(client_for(users[role]), project).status_code == 403
    assert not Iteration.objects.exists()


def test_non_member_gets_404_and_anonymous_goes_to_login(client_for, project, users, build_dataset):
    build_dataset(project, {"red": 5, "green": 5})
    assert post_train(client_for(users["non_member"]), project).status_code == 404
    response = post_train(client_for(None), project)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not Iteration.objects.exists()


def assert_refused(response, fragment: str) -> None:
    assert response.status_code == 422
    assert fragment in response.content.decode()
    assert not Iteration.objects.exists()


def test_refuses_fewer_than_two_tags_with_images(client_for, project, users, build_dataset):
    build_dataset(project, {"red": 8})
    TagFactory(project=project, name="unused")  # a tag without images does not count
    response = post_train(client_for(users["admin"]), project)
    assert_refused(response, "Training needs at least 2 tags with images; this project has 1.")


def test_refuses_a_tag_with_fewer_than_five_images(client_for, project, users, build_dataset):
    build_dataset(project, {"red": 6, "green": 4, "blue": 3})
    response = post_train(client_for(users["admin"]), project)
    assert_refused(response, "Each tag needs at least 5 images to train")
    assert "“green” (4)" in response.content.decode()
    assert "“blue” (3)" in response.content.decode()


def test_refuses_while_a_training_is_queued(client_for, project, users, build_dataset):
    build_dataset(project, {"red": 5, "green": 5})
    client = client_for(users["admin"])
    assert post_train(client, project).status_code == 302
    response = post_train(client, project, force="on")
    assert response.status_code == 422
    assert "already queued or running" in response.content.decode()
    assert Iteration.objects.count() == 1


def completed_copy(iteration: Iteration) -> Iteration:
    Iteration.objects.filter(pk=iteration.pk).update(status=Iteration.Status.COMPLETED)
    iteration.refresh_from_db()
    return iteration


def test_refuses_when_nothing_changed_unless_forced(client_for, project, users, build_dataset):
    build_dataset(project, {"red": 5, "green": 5})
    client = client_for(users["admin"])
    post_train(client, project)
    completed_copy(Iteration.objects.get())

    response = post_train(client, project)
    assert response.status_code == 422
    assert "Nothing changed since Iteration 1" in response.content.decode()
    assert Iteration.objects.count() == 1

    assert post_train(client, project, force="on").status_code == 302
    forced = Iteration.objects.get(number=2)
    assert (
        forced.is_forced and forced.snapshot_hash == Iteration.objects.get(number=1).snapshot_hash
    )


def test_a_new_image_or_a_changed_label_is_a_change(client_for, project, users, build_dataset):
    red, green = build_dataset(project, {"red": 5, "green": 5})
    client = client_for(users["admin"])
    post_train(client, project)
    first = completed_copy(Iteration.objects.get())

    add_images(project, [red], 1, colour=(250, 0, 0), seed=7)
    assert post_train(client, project).status_code == 302
    second = completed_copy(Iteration.objects.get(number=2))
    assert second.snapshot_hash != first.snapshot_hash

    image = project.images.filter(image_tags__tag=red).first()
    image.image_tags.update(tag=green)  # relabel one image red -> green
    assert post_train(client, project).status_code == 302
    assert Iteration.objects.get(number=3).snapshot_hash != second.snapshot_hash


def test_advanced_training_keeps_its_budget_and_checks_it(
    client_for, project, users, build_dataset
):
    build_dataset(project, {"red": 5, "green": 5})
    client = client_for(users["admin"])
    response = post_train(client, project, training_type="advanced", budget_minutes=100000)
    assert response.status_code == 422
    assert "The training budget must be between 1 and" in response.content.decode()
    assert (
        post_train(client, project, training_type="advanced", budget_minutes=3).status_code == 302
    )
    iteration = Iteration.objects.get()
    assert (iteration.training_type, iteration.budget_s) == ("advanced", 180)


def test_a_detection_project_with_image_tags_but_no_boxes_is_refused(users, project, build_dataset):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    build_dataset(project, {"red": 5, "green": 5})
    from project.errors import LabelRuleError

    with pytest.raises(LabelRuleError, match="Detection training needs boxes"):
        start_iteration(project=project, by=users["admin"])


def test_snapshot_holds_images_labels_and_tags_in_order(project, users, build_dataset):
    project.kind = Project.Kind.MULTILABEL
    project.save()
    red, green, blue = build_dataset(project, {"red": 5, "green": 6, "blue": 5}, negatives=2)
    both = add_images(project, [red, blue], 1, seed=5)[0]
    add_images(project, [], 2, seed=6)  # untagged: not training data yet
    empty = TagFactory(project=project, name="later")  # no images: not a column

    iteration = start_iteration(project=project, by=users["admin"])

    tags = list(IterationTag.objects.filter(iteration=iteration).order_by("index"))
    assert [(t.name, t.index, t.image_count, t.tag_id) for t in tags] == [
        ("red", 0, 6, red.id),
        ("green", 1, 6, green.id),
        ("blue", 2, 6, blue.id),
    ]
    assert empty.id not in {t.tag_id for t in tags}
    images = {row.image_id: row for row in IterationImage.objects.filter(iteration=iteration)}
    assert len(images) == 5 + 6 + 5 + 2 + 1 == iteration.image_count
    assert images[both.id].labels == [0, 2] and not images[both.id].is_negative
    assert images[both.id].sha256 == both.sha256
    assert images[both.id].file_name == both.file.name
    assert images[both.id].original_name == both.original_name
    negatives = [row for row in images.values() if row.is_negative]
    assert len(negatives) == 2 and all(row.labels == [] for row in negatives)
    assert iteration.is_multilabel

    # Later tagging does not change what the queued iteration trains on.
    ImageTagFactory(image=both, tag=green)
    assert IterationImage.objects.get(iteration=iteration, image=both).labels == [0, 2]


def test_the_train_page_shows_the_form_to_admins_only(client_for, project, users):
    admin_page = client_for(users["admin"]).get(reverse("training:train", args=[project.id]))
    assert admin_page.status_code == 200
    assert b'data-testid="train-button"' in admin_page.content
    reviewer_page = client_for(users["reviewer"]).get(reverse("training:train", args=[project.id]))
    assert reviewer_page.status_code == 200
    assert b'data-testid="train-button"' not in reviewer_page.content
    assert (
        client_for(users["non_member"])
        .get(reverse("training:train", args=[project.id]))
        .status_code
        == 404
    )
