"""Suggested tags in the gallery: badges with confidence, the "Has a suggestion" filter, the
run's progress and "accept all at or above a confidence" (reviewers and admins)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from predictions.models import Suggestion, SuggestionRun
from predictions.tasks import suggest_tags
from tests.factories import ImageFactory
from tests.predictions.conftest import BLUE, RED, colour_png

pytestmark = pytest.mark.django_db


def suggest(image, iteration, *rows):
    """A stored suggestion of (tag, probability) rows, highest first."""
    tags = [{"tagId": t.pk, "tagName": t.name, "probability": p} for t, p in rows]
    return Suggestion.objects.create(image=image, iteration=iteration, tags=tags)


def gallery(client, project, **query):
    url = reverse("labeling:project-detail", args=[project.pk])
    return client.get(url, query).content.decode()


def test_thumbnails_show_suggestions_with_confidence_and_mark_low_ones(client_for, users, trained):
    red, green, _ = trained.tags
    project, iteration = trained.project, trained.iteration
    sure = ImageFactory(project=project)
    unsure = ImageFactory(project=project)
    tagged = ImageFactory(project=project, is_tagged=True)
    suggest(sure, iteration, (red, 0.93))
    suggest(unsure, iteration, (green, 0.41))
    suggest(tagged, iteration, (red, 0.99))  # stale: the image was tagged by hand since

    html = gallery(client_for(users["annotator"]), project)
    assert html.count('data-testid="suggestion-badge"') == 2
    assert "red? 0.93</span>" in html
    assert "green? 0.41 · low</span>" in html
    assert 'class="badge suggested warn"' in html and "Low confidence. Suggested by" in html


def test_has_a_suggestion_filter_counts_shows_and_walks_only_images_with_one(
    client_for, users, trained
):
    red = trained.tags[0]
    project = trained.project
    with_one = [ImageFactory(project=project) for _ in range(2)]
    ImageFactory(project=project)  # untagged, no suggestion
    for image in with_one:
        suggest(image, trained.iteration, (red, 0.8))
    client = client_for(users["annotator"])

    html = gallery(client, project)
    assert 'data-testid="count-suggested">2<' in html
    html = gallery(client, project, filter="suggested")
    assert html.count('data-testid="thumb"') == 2
    assert 'aria-current="true" data-testid="filter-suggested"' in html
    # The tagging view walks the same filter: A accepts, → moves to the next with a suggestion.
    url = reverse("labeling:image-tag", args=[project.pk, with_one[1].pk])
    page = client.get(url, {"filter": "suggested"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Has a suggestion" in html
    assert f"/images/{with_one[0].pk}/?filter=suggested" in html


def test_the_filter_is_left_out_while_nothing_has_a_suggestion(client_for, users, project):
    ImageFactory(project=project)
    html = gallery(client_for(users["annotator"]), project)
    assert 'data-testid="filter-suggested"' not in html
    assert 'data-testid="suggestion-panel"' not in html


def test_accept_all_above_a_confidence_labels_through_the_tagging_rules(client_for, users, trained):
    red, green, blue = trained.tags
    project, iteration = trained.project, trained.iteration
    sure = ImageFactory(project=project)
    unsure = ImageFactory(project=project)
    two_tags = ImageFactory(project=project)  # multiclass: the tagging rules refuse two tags
    suggest(sure, iteration, (red, 0.95))
    suggest(unsure, iteration, (green, 0.6))
    suggest(two_tags, iteration, (red, 0.97), (blue, 0.92))
    url = reverse("predictions:suggestions-accept", args=[project.pk])

    assert client_for(users["annotator"]).post(url, {"min_confidence": "0.9"}).status_code == 403
    assert Suggestion.objects.count() == 3

    client = client_for(users["reviewer"])
    response = client.post(url, {"min_confidence": "0.9", "return_query": "filter=suggested"})
    assert response.status_code == 302
    assert response.url == reverse("labeling:project-detail", args=[project.pk]) + (
        "?filter=suggested"
    )
    sure.refresh_from_db()
    assert sure.is_tagged and list(sure.image_tags.values_list("tag__name", flat=True)) == ["red"]
    assert sure.version == 2  # written through set_image_tags' compare-and-set
    unsure.refresh_from_db()
    two_tags.refresh_from_db()
    assert not unsure.is_tagged and not two_tags.is_tagged
    assert set(Suggestion.objects.values_list("image_id", flat=True)) == {unsure.pk, two_tags.pk}
    html = client.get(response.url).content.decode()
    assert "Accepted 1 suggestion. 1 skipped" in html


def test_accept_all_refuses_a_confidence_outside_0_to_1(client_for, users, trained):
    suggest(ImageFactory(project=trained.project), trained.iteration, (trained.tags[0], 0.95))
    url = reverse("predictions:suggestions-accept", args=[trained.project.pk])
    client = client_for(users["reviewer"])
    for bad in ("1.5", "lots"):
        page = client.get(client.post(url, {"min_confidence": bad}).url)
        assert "a number from 0 to 1" in page.content.decode()
    assert Suggestion.objects.count() == 1


def test_progress_polls_while_the_task_runs_and_says_when_it_ends(client_for, users, trained):
    from training.services.publishing import make_default_iteration

    project = trained.project
    make_default_iteration(iteration=trained.iteration, by=trained.admin)
    ImageFactory(project=project, content=colour_png(BLUE), width=40, height=40)
    ImageFactory(project=project, content=colour_png(RED), width=40, height=40)
    reviewer = client_for(users["reviewer"])
    reviewer.post(reverse("predictions:suggestions-run", args=[project.pk]))
    run = SuggestionRun.objects.get(project=project)
    assert run.finished is None and run.iteration == trained.iteration

    html = gallery(reviewer, project)
    assert 'data-running="1"' in html and 'hx-trigger="every 2s"' in html
    assert "Suggesting tags with" in html
    assert 'data-testid="suggestion-without">2<' in html

    assert suggest_tags(project.pk) == 2  # the worker's batch, called directly
    run.refresh_from_db()
    assert run.finished is not None
    status = reverse("predictions:suggestions-status", args=[project.pk])
    response = reviewer.get(status, {"was": "running"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "every 2s" not in html and "2 images with a suggestion" in html
    assert "gallery-changed" in response.headers["HX-Trigger"]


def test_a_run_whose_worker_stopped_says_so_instead_of_polling(client_for, users, trained):
    project = trained.project
    ImageFactory(project=project)
    long_ago = timezone.now() - timedelta(hours=1)
    SuggestionRun.objects.create(
        project=project, iteration=trained.iteration, started=long_ago, updated=long_ago
    )
    status = reverse("predictions:suggestions-status", args=[project.pk])
    html = client_for(users["annotator"]).get(status).content.decode()
    assert "the worker may be down" in html and "every 2s" not in html


def test_badges_cost_the_same_queries_for_one_suggestion_or_a_page_of_them(
    client_for, users, trained
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project, red = trained.project, trained.tags[0]
    client = client_for(users["annotator"])
    suggest(ImageFactory(project=project), trained.iteration, (red, 0.9))
    with CaptureQueriesContext(connection) as one:
        gallery(client, project)
    for _ in range(12):
        suggest(ImageFactory(project=project), trained.iteration, (red, 0.9))
    with CaptureQueriesContext(connection) as many:
        html = gallery(client, project)
    assert html.count('data-testid="suggestion-badge"') == 13
    assert len(many) == len(one)


def test_detection_suggestions_show_their_boxes_and_accept_all_draws_them(client_for):
    from labeling.models import Project, Role
    from tests.factories import MembershipFactory, ProjectFactory, TagFactory
    from tests.training.conftest import make_iteration

    project = ProjectFactory(kind=Project.Kind.DETECTION)
    reviewer = MembershipFactory(project=project, role=Role.REVIEWER).user
    cat = TagFactory(project=project, name="cat")
    iteration = make_iteration(project, tags=("cat",))
    image = ImageFactory(project=project)
    box = {"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4}
    Suggestion.objects.create(
        image=image,
        iteration=iteration,
        boxes=[
            {"tagId": cat.pk, "tagName": "cat", "probability": p, "boundingBox": box}
            for p in (0.96, 0.91)
        ],
    )
    client = client_for(reviewer)
    assert "2 boxes? 0.91</span>" in gallery(client, project)

    url = reverse("predictions:suggestions-accept", args=[project.pk])
    client.post(url, {"min_confidence": "0.9"})
    image.refresh_from_db()
    assert image.is_tagged and image.regions.count() == 2
    region = image.regions.first()
    assert (region.left, region.top, region.width, region.height) == (0.1, 0.2, 0.3, 0.4)
    assert not Suggestion.objects.exists()
