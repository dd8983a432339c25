"""Dataset export with images: every format round-trips into a new project exactly.

Export (a worker job started from the datasets page, downloaded from it) → import into a new
project gives the same images (sha256), the same tags in the same order and kinds, the same
boxes within 1e-6, the same negatives ("No objects" in detection, the Negative tag in
classification) and the same unlabeled images.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from labeling.models import Image, ImageTag, Membership, Project, Region, Role, Tag
from tests.conftest import make_image
from tests.factories import ImageFactory, ProjectFactory, TagFactory, UserFactory
from tests.labeling.dataset_helpers import export_through_page, import_through_page, read_zip

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = UserFactory(username="export-admin")
    client.force_login(user)
    return user


def new_project(admin, kind):
    project = ProjectFactory(kind=kind, owner=admin)
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    return project


def add_image(project, name, width, height, color):
    return ImageFactory(
        project=project,
        original_name=name,
        width=width,
        height=height,
        content=make_image(width, height, color),
    )


@pytest.fixture
def detection_project(admin):
    project = new_project(admin, Project.Kind.DETECTION)
    cat, dog = TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")
    TagFactory(project=project, name="bird")  # on no image: kept all the same
    negative = TagFactory(project=project, name="Negative", kind=Tag.Kind.NEGATIVE)
    street = add_image(project, "street.png", 640, 480, (10, 20, 30))
    park = add_image(project, "park.jpg", 333, 217, (200, 100, 50))
    empty = add_image(project, "empty.png", 30, 20, (0, 255, 0))  # "No objects"
    add_image(project, "unseen.png", 31, 21, (0, 0, 255))  # not labeled yet
    # Fractions far from whole pixels and from the formats' decimals.
    Region.objects.create(
        image=street, tag=cat, left=0.123456789, top=0.2345678912, width=0.31415926, height=0.4
    )
    Region.objects.create(
        image=street, tag=dog, left=0.5173, top=0.3311, width=0.271828, height=0.5
    )
    Region.objects.create(image=park, tag=dog, left=0.0, top=0.0, width=1.0, height=1.0)
    Region.objects.create(
        image=park, tag=cat, left=0.987654321, top=0.01, width=0.012345679, height=0.333333333
    )
    ImageTag.objects.create(image=empty, tag=negative)
    Image.objects.filter(pk__in=[street.pk, park.pk, empty.pk]).update(is_tagged=True)
    return project


def classification_project(admin, kind):
    project = new_project(admin, kind)
    red, round_ = TagFactory(project=project, name="red"), TagFactory(project=project, name="round")
    TagFactory(project=project, name="green")  # on no image
    negative = TagFactory(project=project, name="Nothing", kind=Tag.Kind.NEGATIVE)
    apple = add_image(project, "apple.png", 12, 10, (255, 0, 0))
    ball = add_image(project, "ball.png", 12, 10, (0, 0, 255))
    stone = add_image(project, "stone.png", 12, 10, (90, 90, 90))
    add_image(project, "unknown.png", 12, 10, (9, 9, 9))
    labels = {apple: [red], ball: [round_], stone: [negative]}
    if kind == Project.Kind.MULTILABEL:
        labels[apple] = [red, round_]
    for image, tags in labels.items():
        for tag in tags:
            ImageTag.objects.create(image=image, tag=tag)
    Image.objects.filter(pk__in=[i.pk for i in labels]).update(is_tagged=True)
    return project


def sha256_of(image: Image) -> str:
    with image.file.open("rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def snapshot(project: Project) -> dict:
    """Everything a round trip must keep, keyed by image content (sha256 of the stored file)."""
    images = {image.pk: sha256_of(image) for image in project.images.all()}
    assert all(image.sha256 == images[image.pk] for image in project.images.all())
    boxes: dict[str, list] = {sha: [] for sha in images.values()}
    for region in Region.objects.filter(image__project=project).select_related("tag"):
        boxes[images[region.image_id]].append(
            (region.tag.name, region.left, region.top, region.width, region.height)
        )
    tags: dict[str, list] = {sha: [] for sha in images.values()}
    for label in ImageTag.objects.filter(image__project=project).select_related("tag"):
        tags[images[label.image_id]].append((label.tag.name, label.tag.kind))
    return {
        "tags": list(project.tags.order_by("pk").values_list("name", "kind")),
        "images": sorted(images.values()),
        "names": sorted(project.images.values_list("original_name", flat=True)),
        "tagged": sorted(images[i.pk] for i in project.images.filter(is_tagged=True)),
        "boxes": {sha: sorted(b) for sha, b in boxes.items()},
        "image_tags": {sha: sorted(t) for sha, t in tags.items()},
    }


def assert_same(copy: dict, original: dict) -> None:
    for key in ("tags", "images", "names", "tagged", "image_tags"):
        assert copy[key] == original[key], key
    for sha, boxes in original["boxes"].items():
        assert len(copy["boxes"][sha]) == len(boxes)
        for (tag_a, *box_a), (tag_b, *box_b) in zip(boxes, copy["boxes"][sha], strict=True):
            assert tag_a == tag_b
            assert box_b == pytest.approx(box_a, abs=1e-6, rel=0)


def round_trip(client, admin, project, format_name, capture):
    archive = export_through_page(client, project, format_name, capture)
    copy = new_project(admin, project.kind)
    result = import_through_page(client, copy, admin, archive, format_name, capture)
    assert result["state"] == "done", result["job"].problems
    return archive, copy


@pytest.mark.parametrize("format_name", ["coco", "voc", "yolo"])
def test_detection_export_round_trips_images_tags_boxes_and_negatives(
    client, admin, detection_project, format_name, django_capture_on_commit_callbacks
):
    archive, copy = round_trip(
        client, admin, detection_project, format_name, django_capture_on_commit_callbacks
    )
    original = snapshot(detection_project)
    assert original["tagged"] and len(original["images"]) == 4
    assert_same(snapshot(copy), original)
    # Images go in as they are: the archive holds each file's exact bytes.
    files = read_zip(archive)
    digests = {hashlib.sha256(data).hexdigest() for data in files.values()}
    assert set(original["images"]) <= digests
    manifest = json.loads(files["loupe.json"])
    assert manifest["negative_images"] == ["empty.png"]
    assert manifest["tags"] == ["cat", "dog", "bird", "Negative"]
    # And a second export of the copy is the same archive, byte for byte.
    again = export_through_page(client, copy, format_name, django_capture_on_commit_callbacks)
    assert read_zip(again) == files


@pytest.mark.parametrize("kind", [Project.Kind.MULTICLASS, Project.Kind.MULTILABEL])
@pytest.mark.parametrize("format_name", ["folders", "csv"])
def test_classification_export_round_trips_images_tags_and_negatives(
    client, admin, kind, format_name, django_capture_on_commit_callbacks
):
    project = classification_project(admin, kind)
    _, copy = round_trip(client, admin, project, format_name, django_capture_on_commit_callbacks)
    original = snapshot(project)
    assert ("Nothing", "negative") in original["tags"]
    assert_same(snapshot(copy), original)


def test_export_of_chosen_tags_holds_only_their_images(
    client, admin, detection_project, django_capture_on_commit_callbacks
):
    bird = detection_project.tags.get(name="bird")
    negative = detection_project.tags.get(kind=Tag.Kind.NEGATIVE)
    park = detection_project.images.get(original_name="park.jpg")
    Region.objects.create(image=park, tag=bird, left=0.2, top=0.2, width=0.1, height=0.1)
    files = read_zip(
        export_through_page(
            client,
            detection_project,
            "coco",
            django_capture_on_commit_callbacks,
            tags=[bird.pk, negative.pk],
        )
    )
    assert sorted(name for name in files if name.startswith("images/")) == [
        "images/empty.png",
        "images/park.jpg",
    ]
    document = json.loads(files["annotations.json"])
    # The chosen images keep all their boxes, not only the chosen tags'.
    assert len(document["annotations"]) == 3


def test_export_of_a_gallery_filter_holds_only_its_images(
    client, admin, detection_project, django_capture_on_commit_callbacks
):
    files = read_zip(
        export_through_page(
            client, detection_project, "yolo", django_capture_on_commit_callbacks, filter="untagged"
        )
    )
    assert sorted(name for name in files if name.startswith("images/")) == ["images/unseen.png"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"format": "tiff"}, "Unknown dataset format"),
        ({"format": "coco", "filter": "blurry"}, "Unknown gallery filter"),
        ({"format": "coco", "tags": ["999999"]}, "no tag with id 999999"),
        ({"format": "coco", "tags": ["x"]}, "Tags are chosen by their ids."),
    ],
)
def test_bad_export_requests_get_a_clear_422_and_start_nothing(
    client, admin, detection_project, form, message, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/projects/{detection_project.pk}/datasets/exports/", form)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert callbacks == []


def test_an_image_file_missing_from_storage_fails_the_job_with_its_name(
    client, admin, detection_project, django_capture_on_commit_callbacks
):
    from labeling.services.export_jobs import get_export
    from labeling.tasks_export import export_dataset_task

    park = detection_project.images.get(original_name="park.jpg")
    park.file.storage.delete(park.file.name)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            f"/projects/{detection_project.pk}/datasets/exports/", {"format": "voc"}
        )
    job_id = response.url.split("export=")[1]
    assert export_dataset_task(detection_project.pk, job_id) == "failed"
    job = get_export(project=detection_project, job_id=job_id)
    assert job.problem_code == "missing_file" and "park.jpg" in job.message
    page = client.get(response.url).content.decode()
    assert "park.jpg" in page and "Download" not in page
    download = client.get(f"/projects/{detection_project.pk}/datasets/exports/{job_id}/download/")
    assert download.status_code == 422


def test_the_gallery_links_its_filter_to_the_export_form(client, admin, detection_project):
    car = detection_project.tags.get(name="cat")
    gallery = client.get(f"/projects/{detection_project.pk}/?tag={car.pk}").content.decode()
    link = f"/projects/{detection_project.pk}/datasets/?tag={car.pk}#export-form"
    assert f'href="{link}"' in gallery
    page = client.get(link.split("#")[0]).content.decode()
    assert f'value="{car.pk}" checked' in page
    untagged = client.get(f"/projects/{detection_project.pk}/datasets/?filter=untagged")
    assert '<option value="untagged" selected>' in untagged.content.decode()
