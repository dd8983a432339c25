"""Every dataset format round-trips: export → import into a new project → export is identical."""

import json

import pytest

from labeling.models import Image, ImageTag, Membership, Project, Region, Role
from tests.conftest import make_image
from tests.factories import ImageFactory, ProjectFactory, TagFactory, UserFactory
from tests.labeling.dataset_helpers import export_through_page, import_through_page, read_zip

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    user = UserFactory(username="dataset-admin")
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
def export(django_capture_on_commit_callbacks):
    def run(client, project, format_name):
        return export_through_page(client, project, format_name, django_capture_on_commit_callbacks)

    return run


@pytest.fixture
def detection_project(admin):
    project = new_project(admin, Project.Kind.DETECTION)
    cat, dog = TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")
    first = add_image(project, "street.png", 64, 48, (10, 20, 30))
    second = add_image(project, "park.jpg", 50, 40, (200, 100, 50))
    add_image(project, "empty.png", 30, 20, (0, 255, 0))  # no boxes: a negative
    # Fractions that are not whole pixels, so rounding in the formats is exercised.
    Region.objects.create(image=first, tag=cat, left=0.1, top=0.2, width=0.3, height=0.4)
    Region.objects.create(image=first, tag=dog, left=0.5173, top=0.3311, width=0.2, height=0.5)
    Region.objects.create(image=second, tag=dog, left=0.0, top=0.0, width=1.0, height=1.0)
    Image.objects.filter(pk__in=[first.pk, second.pk]).update(is_tagged=True)
    return project


def boxes_of(project):
    return sorted(
        (r.image.original_name, r.tag.name, r.left, r.top, r.width, r.height)
        for r in Region.objects.filter(image__project=project).select_related("image", "tag")
    )


@pytest.mark.parametrize("format_name", ["coco", "voc", "yolo"])
def test_detection_format_round_trips(
    client, admin, detection_project, format_name, django_capture_on_commit_callbacks, export
):
    first = export(client, detection_project, format_name)
    copy = new_project(admin, Project.Kind.DETECTION)
    result = import_through_page(
        client, copy, admin, first, format_name, django_capture_on_commit_callbacks
    )
    assert result["state"] == "done", result["job"].problems
    assert copy.images.count() == 3
    assert copy.images.filter(is_tagged=True).count() == 2
    second = export(client, copy, format_name)
    assert read_zip(second) == read_zip(first)
    # The stored boxes are the original ones within a hundredth of a pixel.
    for (name_a, tag_a, *box_a), (name_b, tag_b, *box_b) in zip(
        boxes_of(detection_project), boxes_of(copy), strict=True
    ):
        assert (name_a, tag_a) == (name_b, tag_b)
        assert box_b == pytest.approx(box_a, abs=0.01 / 64)


def test_coco_export_has_pixel_bboxes_and_categories(client, admin, detection_project, export):
    files = read_zip(export(client, detection_project, "coco"))
    document = json.loads(files["annotations.json"])
    assert [c["name"] for c in document["categories"]] == ["cat", "dog"]
    images = {i["id"]: i for i in document["images"]}
    street = next(i for i in images.values() if i["file_name"] == "images/street.png")
    assert (street["width"], street["height"]) == (64, 48)
    bboxes = sorted(a["bbox"] for a in document["annotations"] if a["image_id"] == street["id"])
    assert bboxes == [[6.4, 9.6, 19.2, 19.2], [33.1072, 15.8928, 12.8, 24.0]]
    assert "images/empty.png" in files and "images/park.jpg" in files


def test_yolo_and_voc_exports_use_their_conventions(client, admin, detection_project, export):
    yolo = read_zip(export(client, detection_project, "yolo"))
    assert yolo["classes.txt"] == b"cat\ndog\n"
    assert yolo["labels/street.txt"].decode().splitlines() == [
        "0 0.25 0.4 0.3 0.4",
        "1 0.6173 0.5811 0.2 0.5",
    ]
    assert yolo["labels/empty.txt"] == b""
    voc = read_zip(export(client, detection_project, "voc"))
    xml = voc["Annotations/street.xml"].decode()
    assert "<xmin>6.4</xmin>" in xml and "<xmax>25.6</xmax>" in xml
    assert "<width>64</width>" in xml and "<name>dog</name>" in xml


@pytest.fixture
def multilabel_project(admin):
    project = new_project(admin, Project.Kind.MULTILABEL)
    red, round_ = TagFactory(project=project, name="red"), TagFactory(project=project, name="round")
    apple = add_image(project, "apple.png", 12, 10, (255, 0, 0))
    brick = add_image(project, "brick.png", 12, 10, (150, 30, 30))
    ball = add_image(project, "ball.png", 12, 10, (0, 0, 255))
    add_image(project, "unknown.png", 12, 10, (9, 9, 9))
    for image, tags in ((apple, [red, round_]), (brick, [red]), (ball, [round_])):
        for tag in tags:
            ImageTag.objects.create(image=image, tag=tag)
    Image.objects.filter(pk__in=[apple.pk, brick.pk, ball.pk]).update(is_tagged=True)
    return project


def tags_of(project):
    return sorted(
        (t.image.original_name, t.tag.name)
        for t in ImageTag.objects.filter(image__project=project).select_related("image", "tag")
    )


@pytest.mark.parametrize("format_name", ["folders", "csv"])
def test_classification_format_round_trips(
    client, admin, multilabel_project, format_name, django_capture_on_commit_callbacks, export
):
    first = export(client, multilabel_project, format_name)
    copy = new_project(admin, Project.Kind.MULTILABEL)
    result = import_through_page(
        client, copy, admin, first, format_name, django_capture_on_commit_callbacks
    )
    assert result["state"] == "done", result["job"].problems
    assert copy.images.count() == 4
    assert tags_of(copy) == tags_of(multilabel_project)
    assert read_zip(export(client, copy, format_name)) == read_zip(first)


def test_folders_export_puts_a_multilabel_image_in_each_tag_folder(
    client, admin, multilabel_project, export
):
    files = read_zip(export(client, multilabel_project, "folders"))
    assert set(files) == {
        "red/apple.png",
        "red/brick.png",
        "round/apple.png",
        "round/ball.png",
        "unknown.png",
        "loupe.json",
    }
    assert files["red/apple.png"] == files["round/apple.png"]


def test_csv_export_lists_tags_per_file(client, admin, multilabel_project, export):
    files = read_zip(export(client, multilabel_project, "csv"))
    assert files["labels.csv"].decode().splitlines() == [
        "file,tags",
        "images/apple.png,red;round",
        "images/ball.png,round",
        "images/brick.png,red",
        "images/unknown.png,",
    ]


def test_format_must_fit_the_project_kind_and_reviewer_role(
    client, admin, client_for, multilabel_project
):
    url = f"/projects/{multilabel_project.pk}/datasets/exports/"
    response = client.post(url, {"format": "coco"})
    assert response.status_code == 422
    assert "does not fit a classification project" in response.content.decode()
    annotator = UserFactory()
    Membership.objects.create(project=multilabel_project, user=annotator, role=Role.ANNOTATOR)
    response = client_for(annotator).post(url, {"format": "csv"})
    assert response.status_code == 403
