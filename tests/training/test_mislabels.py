"""The "Possible mislabels" queue over an iteration's stored out-of-fold scores."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.models import ImageTag, Project, Role
from tests.factories import ImageFactory, ImageTagFactory, ProjectFactory, TagFactory
from training.models import Iteration, IterationImage, IterationScore, IterationTag, KeptLabel

pytestmark = pytest.mark.django_db


def scored_project(project: Project, flipped: dict[int, int], multilabel: bool = False):
    """20 images per tag scored 0.6-0.99 for their true tag; `flipped` {index: wrong tag index}
    are labeled with the wrong tag while the scores say 0.95 for the true one."""
    tags = [TagFactory(project=project, name=name) for name in ("cat", "dog")]
    iteration = Iteration.objects.create(
        project=project,
        number=1,
        name="Iteration 1",
        status="completed",
        backbone="lite0",
        training_type="quick",
        is_multilabel=multilabel,
    )
    for index, tag in enumerate(tags):
        IterationTag.objects.create(iteration=iteration, tag=tag, name=tag.name, index=index)
    rng = np.random.default_rng(0)
    images = []
    for n in range(40):
        truth = n // 20
        label = flipped.get(n, truth)
        image = ImageFactory(project=project)
        ImageTagFactory(image=image, tag=tags[label])
        p = 0.95 if n in flipped else float(rng.uniform(0.6, 0.99))
        scores = [p, 1 - p] if truth == 0 else [1 - p, p]
        row = IterationImage.objects.create(
            iteration=iteration,
            image=image,
            sha256=image.sha256,
            file_name=image.file.name,
            labels=[label],
        )
        IterationScore.objects.create(
            iteration=iteration, iteration_image=row, fold=n % 5, scores=scores
        )
        images.append(image)
    return tags, images


def test_queue_shows_flipped_images_and_accept_relabels_through_the_tagging_service(
    project, users, client_for
) -> None:
    _tags, images = scored_project(project, {3: 1, 25: 0})
    client = client_for(users[str(Role.REVIEWER)])
    response = client.get(f"/projects/{project.pk}/mislabels/")
    assert response.status_code == 200
    current = response.context["current"]
    queued = [current["s"]] + [row["s"] for row in response.context["upcoming"]]
    assert {s.image_id for s in queued} == {images[3].pk, images[25].pk}
    first = next(s for s in queued if s.image_id == images[3].pk)
    assert (first.given, first.suggested) == ("dog", "cat") and first.confidence > 0.8
    version = images[3].version
    response = client.post(
        f"/projects/{project.pk}/mislabels/accept/",
        {"image_id": images[3].pk, "label_key": first.label_key},
    )
    assert response.status_code == 302
    assert set(ImageTag.objects.filter(image=images[3]).values_list("tag__name", flat=True)) == {
        "cat"
    }
    images[3].refresh_from_db()
    assert images[3].version == version + 1
    after = client.get(f"/projects/{project.pk}/mislabels/")
    assert after.context["total"] == 1


def test_keep_stops_the_image_being_flagged_for_that_label(project, users, client_for) -> None:
    tags, images = scored_project(project, {25: 0})
    client = client_for(users[str(Role.ADMIN)])
    current = client.get(f"/projects/{project.pk}/mislabels/").context["current"]["s"]
    assert current.image_id == images[25].pk
    client.post(
        f"/projects/{project.pk}/mislabels/keep/",
        {"image_id": current.image_id, "label_key": current.label_key},
    )
    assert KeptLabel.objects.filter(image=images[25], label_key=f"mc:{tags[0].pk}").exists()
    assert ImageTag.objects.get(image=images[25]).tag == tags[0]  # label untouched
    response = client.get(f"/projects/{project.pk}/mislabels/")
    assert response.context["total"] == 0
    assert b"No possible mislabels left" in response.content
    # A stale second press answers with a message, not an error page.
    again = client.post(
        f"/projects/{project.pk}/mislabels/keep/",
        {"image_id": current.image_id, "label_key": current.label_key},
        follow=True,
    )
    assert again.status_code == 200 and b"no longer in the queue" in again.content


def test_a_label_fixed_since_training_leaves_the_queue(project, users, client_for) -> None:
    tags, images = scored_project(project, {3: 1})
    ImageTag.objects.filter(image=images[3]).update(tag=tags[0])
    response = client_for(users[str(Role.REVIEWER)]).get(f"/projects/{project.pk}/mislabels/")
    assert response.context["total"] == 0


def test_annotators_cannot_open_the_queue(project, users, client_for) -> None:
    scored_project(project, {3: 1})
    response = client_for(users[str(Role.ANNOTATOR)]).get(f"/projects/{project.pk}/mislabels/")
    assert response.status_code == 403


def test_multilabel_suggests_adding_or_removing_one_tag(users, client_for) -> None:
    project = ProjectFactory(kind=Project.Kind.MULTILABEL)
    from tests.factories import MembershipFactory

    MembershipFactory(project=project, user=users[str(Role.ADMIN)], role=Role.ADMIN)
    _tags, images = scored_project(project, {4: 1}, multilabel=True)
    client = client_for(users[str(Role.ADMIN)])
    queue = client.get(f"/projects/{project.pk}/mislabels/")
    rows = [queue.context["current"]["s"]] + [r["s"] for r in queue.context["upcoming"]]
    assert {(s.image_id, s.given, s.suggested) for s in rows} == {
        (images[4].pk, "“dog”", "no “dog”"),
        (images[4].pk, "no “cat”", "“cat”"),
    }
    add_cat = next(s for s in rows if s.suggested == "“cat”")
    client.post(
        f"/projects/{project.pk}/mislabels/accept/",
        {"image_id": images[4].pk, "label_key": add_cat.label_key},
    )
    names = set(ImageTag.objects.filter(image=images[4]).values_list("tag__name", flat=True))
    assert names == {"cat", "dog"}


def test_detection_queue_retags_a_disputed_box_and_adds_a_missed_one(users, client_for) -> None:
    from labeling.models import Region
    from tests.factories import MembershipFactory, RegionFactory

    project = ProjectFactory(kind=Project.Kind.DETECTION)
    MembershipFactory(project=project, user=users[str(Role.REVIEWER)], role=Role.REVIEWER)
    tags = [TagFactory(project=project, name=name) for name in ("car", "bike")]
    iteration = Iteration.objects.create(
        project=project, number=1, name="Iteration 1", status="completed", backbone="lite0"
    )
    for index, tag in enumerate(tags):
        IterationTag.objects.create(iteration=iteration, tag=tag, name=tag.name, index=index)
    rng = np.random.default_rng(0)
    images = []
    for n in range(30):
        image = ImageFactory(project=project, width=640, height=480)
        label = 0 if n == 3 else n % 2  # image 3: a bike labeled "car"
        RegionFactory(image=image, tag=tags[label], left=0.2, top=0.2, width=0.3, height=0.3)
        detections = [[n % 2, float(rng.uniform(0.8, 0.95)), 0.21, 0.2, 0.3, 0.3]]
        if n == 3:
            detections = [[1, 0.97, 0.2, 0.2, 0.3, 0.3]]
        if n == 6:  # an unlabeled car
            detections.append([0, 0.96, 0.6, 0.6, 0.3, 0.3])
        row = IterationImage.objects.create(
            iteration=iteration,
            image=image,
            sha256=image.sha256,
            file_name=image.file.name,
            labels=[label],
            boxes=[[label, 0.2, 0.2, 0.3, 0.3]],
        )
        IterationScore.objects.create(
            iteration=iteration, iteration_image=row, scores=[0.9, 0.9], detections=detections
        )
        images.append(image)
    client = client_for(users[str(Role.REVIEWER)])
    response = client.get(f"/projects/{project.pk}/mislabels/")
    rows = [response.context["current"]["s"]] + [r["s"] for r in response.context["upcoming"]]
    assert {(s.image_id, s.kind) for s in rows} == {
        (images[3].pk, "wrong-tag"),
        (images[6].pk, "missed"),
    }
    html = response.content.decode()
    for s in rows:  # the current one and the "Next" table open the box editor, not tagging
        assert f"/projects/{project.pk}/images/{s.image_id}/boxes/" in html
        assert f'href="/projects/{project.pk}/images/{s.image_id}/"' not in html
    for s in rows:
        answer = client.post(
            f"/projects/{project.pk}/mislabels/accept/",
            {"image_id": s.image_id, "label_key": s.label_key},
        )
        assert answer.status_code == 302
    assert list(Region.objects.filter(image=images[3]).values_list("tag__name", flat=True)) == [
        "bike"
    ]
    added = Region.objects.filter(image=images[6]).order_by("left")
    assert [(r.tag.name, round(r.left, 2)) for r in added] == [("car", 0.2), ("car", 0.6)]
    assert client.get(f"/projects/{project.pk}/mislabels/").context["total"] == 0
