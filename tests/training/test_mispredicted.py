"""A mispredicted image opened from a performance page keeps its context (issue 11, item 4):
the set the editor walks, the model's prediction beside the true labels, the way back at the
page's threshold, and the gallery's "mispredicted by iteration N" filter."""

from __future__ import annotations

import html
import json

import pytest
from django.urls import reverse

from labeling.models import Project
from tests.factories import UserFactory
from tests.training.conftest import make_iteration
from tests.training.detection_data import make_detection_iteration
from training.models import IterationImage
from training.services.mispredicted import mispredicted_image_ids

pytestmark = pytest.mark.django_db

# cat/dog, multiclass: the 2nd image is wrong at 0.5; the 4th too at 0.75 (0.7 is below it).
ROWS = [([0], [0.9, 0.1]), ([0], [0.4, 0.6]), ([1], [0.2, 0.8]), ([1], [0.3, 0.7])]


def image_ids(iteration) -> list[int]:
    return list(
        IterationImage.objects.filter(iteration=iteration)
        .order_by("pk")
        .values_list("image_id", flat=True)
    )


@pytest.fixture
def iteration(project):
    return make_iteration(project, rows=ROWS)


def tag_url(project, image_id, **query) -> str:
    url = reverse("labeling:image-tag", args=[project.id, image_id])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def test_the_set_follows_the_threshold_by_the_performance_page_rule(iteration):
    ids = image_ids(iteration)
    assert mispredicted_image_ids(iteration, 0.5) == [ids[1]]
    assert mispredicted_image_ids(iteration, 0.75) == [ids[1], ids[3]]


def test_multilabel_counts_a_missing_or_an_extra_tag(project):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.MULTILABEL)
    project.refresh_from_db()
    rows = [([0, 1], [0.9, 0.8]), ([0, 1], [0.9, 0.2]), ([0], [0.9, 0.6]), ([], [0.1, 0.2])]
    iteration = make_iteration(project, rows=rows)
    ids = image_ids(iteration)
    assert mispredicted_image_ids(iteration, 0.5) == [ids[1], ids[2]]


def test_the_tagging_view_shows_the_prediction_and_walks_the_set(
    client_for, project, users, iteration
):
    ids = image_ids(iteration)
    client = client_for(users["annotator"])
    query = {"mispredicted": iteration.id, "threshold": "0.75"}
    page = html.unescape(client.get(tag_url(project, ids[1], **query)).content.decode())
    assert 'data-testid="model-prediction"' in page
    # Dog's 0.6 is under 0.75: nothing predicted, which the performance page calls Negative.
    assert "predicted: Negative · true: cat" in page
    assert "<td>dog</td><td>0.600</td>" in page
    assert "Mispredicted by Iteration 1 at threshold 0.75 · image 1 of 2" in page
    performance = reverse("training:iteration-performance", args=[project.id, iteration.id])
    assert f'href="{performance}?threshold=0.75" data-testid="back-to-gallery"' in page
    # Next is the set's next image, not the gallery's; the link keeps the set.
    next_url = tag_url(project, ids[3], mispredicted=iteration.id, threshold="0.75")
    assert f'href="{next_url}"' in page
    assert 'data-testid="nav-previous"' not in page

    page = html.unescape(client.get(next_url).content.decode())
    assert "predicted: Negative · true: dog" in page and "image 2 of 2" in page
    assert 'data-testid="nav-next"' not in page


def test_a_tag_change_in_the_set_stays_in_the_set(client_for, project, users, iteration):
    from tests.factories import TagFactory

    cat = TagFactory(project=project, name="cat")
    ids = image_ids(iteration)
    client = client_for(users["annotator"])
    url = reverse("labeling:image-tag-toggle", args=[project.id, ids[1]])
    response = client.post(
        f"{url}?mispredicted={iteration.id}&threshold=0.75",
        {"tag": cat.id, "version": 1},
    )
    assert response.status_code == 302
    assert response.url.endswith(f"?mispredicted={iteration.id}&threshold=0.75")


def test_a_set_of_another_project_is_not_found(client_for, project, users, iteration):
    other = make_iteration(Project.objects.create(name="Other", owner=UserFactory()), number=1)
    ids = image_ids(iteration)
    response = client_for(users["annotator"]).get(
        tag_url(project, ids[1], mispredicted=other.id, threshold="0.5")
    )
    assert response.status_code == 404


def test_the_gallery_filter_shows_the_set_and_keeps_it_in_its_links(
    client_for, project, users, iteration
):
    ids = image_ids(iteration)
    gallery = reverse("labeling:project-detail", args=[project.id])
    response = client_for(users["annotator"]).get(
        gallery, {"mispredicted": iteration.id, "threshold": "0.75"}
    )
    page = html.unescape(response.content.decode())
    shown = [int(c.split('"', 1)[0]) for c in page.split('data-testid="thumb" data-image-id="')[1:]]
    assert sorted(shown) == sorted([ids[1], ids[3]])
    assert "Mispredicted by Iteration 1 at threshold 0.75: 2 images" in page
    assert f"?mispredicted={iteration.id}&threshold=0.75" in page.split('data-testid="thumb"')[1]


def test_the_performance_page_opens_at_the_threshold_in_its_url(
    client_for, project, users, iteration
):
    url = reverse("training:iteration-performance", args=[project.id, iteration.id])
    page = client_for(users["annotator"]).get(url, {"threshold": "0.75"}).content.decode()
    data = json.loads(page.split('id="performance-data" type="application/json">')[1].split("<")[0])
    assert data["threshold"] == 0.75
    assert data["set_key"] == "mispredicted" and data["iteration_id"] == iteration.id
    assert 'value="0.75" data-threshold' in page
    # A bad one falls back to the saved threshold.
    page = client_for(users["annotator"]).get(url, {"threshold": "7"}).content.decode()
    assert 'value="0.5" data-threshold' in page


# Detection: A found; B missed; C a wrong box at 0.8 (gone at 0.85); D found at 0.7.
DET_ROWS = [
    ([[0, 0.1, 0.1, 0.3, 0.3]], [[0, 0.9, 0.1, 0.1, 0.3, 0.3]]),
    ([[0, 0.5, 0.5, 0.2, 0.2]], []),
    ([], [[1, 0.8, 0.2, 0.2, 0.2, 0.2]]),
    ([[1, 0.1, 0.1, 0.4, 0.4]], [[1, 0.7, 0.1, 0.1, 0.4, 0.4]]),
]


@pytest.fixture
def detection(project):
    Project.objects.filter(pk=project.pk).update(kind=Project.Kind.DETECTION)
    project.refresh_from_db()
    return project


def test_detection_set_and_box_editor_data(client_for, detection, users):
    iteration = make_detection_iteration(detection, tags=("red", "blue"), rows=DET_ROWS)
    ids = image_ids(iteration)
    assert mispredicted_image_ids(iteration, 0.5, 0.5) == [ids[1], ids[2]]
    assert mispredicted_image_ids(iteration, 0.85, 0.5) == [ids[1], ids[3]]

    client = client_for(users["annotator"])
    url = reverse("labeling:image-boxes", args=[detection.id, ids[2]])
    query = f"?mispredicted={iteration.id}&threshold=0.5&overlap=0.5"
    data = client.get(url + query, HTTP_ACCEPT="application/json").json()
    assert data["setLabel"].endswith("image 2 of 2")
    assert data["prediction"]["summary"] == "0 missed · 1 wrong"
    assert data["prediction"]["boxes"][0]["name"] == "blue"
    assert data["prediction"]["boxes"][0]["probability"] == 0.8
    performance = reverse("training:iteration-performance", args=[detection.id, iteration.id])
    assert data["backUrl"] == f"{performance}?threshold=0.5&overlap=0.5"
    assert data["prevUrl"] == reverse("labeling:image-boxes", args=[detection.id, ids[1]]) + query
    assert data["nextUrl"] is None and data["nextUntaggedUrl"] is None

    page = client.get(url + query).content.decode()
    assert 'data-testid="model-prediction"' in page and "box-prediction.js" in page
