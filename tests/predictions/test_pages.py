"""Keys page, quick test, and suggested tags in the tagging view."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from predictions.models import Prediction, PredictionKey, Suggestion
from predictions.services.keys import hash_key
from predictions.services.suggestions import suggest_for_untagged
from tests.factories import ImageFactory
from tests.predictions.conftest import BLUE, GREEN, RED, colour_png

pytestmark = pytest.mark.django_db


def test_admin_creates_a_key_shown_once_and_stored_as_a_hash(client_for, project, users):
    client = client_for(users["admin"])
    url = reverse("predictions:key-list", args=[project.id])
    response = client.post(url, {"action": "create", "name": "Mobile app"})
    assert response.status_code == 200
    html = response.content.decode()
    secret = html.split('data-testid="key-secret">', 1)[1].split("<", 1)[0]
    key = PredictionKey.objects.get(project=project)
    assert key.key_hash == hash_key(secret) and secret not in key.key_hash
    assert secret not in client.get(url).content.decode()  # never shown again
    response = client.post(url, {"action": "revoke", "key_id": key.pk})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.is_revoked


def test_reviewers_cannot_manage_keys(client_for, project, users):
    url = reverse("predictions:key-list", args=[project.id])
    assert client_for(users["reviewer"]).post(url, {"name": "x"}).status_code == 403
    assert not PredictionKey.objects.exists()


def quick(client, trained, colour, store):
    data = {
        "iteration": trained.iteration.pk,
        "image": SimpleUploadedFile("t.png", colour_png(colour), "image/png"),
    }
    if store:
        data["store"] = "1"
    return client.post(reverse("predictions:quick-test", args=[trained.project.id]), data)


def test_quick_test_shows_the_prediction_and_stores_only_when_asked(client_for, users, trained):
    client = client_for(users["annotator"])
    response = quick(client, trained, GREEN, store=False)
    assert response.status_code == 200
    html = response.content.decode()
    first_row = html.split('data-testid="quick-test-row"><td>', 1)[1].split("<", 1)[0]
    assert first_row == "green"
    assert not Prediction.objects.exists()
    # Storing feeds the Predictions tab: reviewers and admins only (test_quick_test_roles.py).
    response = quick(client_for(users["reviewer"]), trained, RED, store=True)
    assert 'data-testid="quick-test-stored"' in response.content.decode()
    assert Prediction.objects.get().top_tag.name == "red"


def test_quick_test_reports_a_bad_file(client_for, users, trained):
    data = {
        "iteration": trained.iteration.pk,
        "image": SimpleUploadedFile("t.png", b"nope", "image/png"),
    }
    response = client_for(users["admin"]).post(
        reverse("predictions:quick-test", args=[trained.project.id]), data
    )
    assert response.status_code == 422
    assert "not an image" in response.content.decode()


def test_suggested_tags_show_in_the_tagging_view_and_one_post_accepts_them(
    client_for, users, trained
):
    from training.services.publishing import make_default_iteration

    project = trained.project
    make_default_iteration(iteration=trained.iteration, by=trained.admin)
    untagged = ImageFactory(project=project, content=colour_png(BLUE), width=40, height=40)
    tagged = ImageFactory(project=project, content=colour_png(RED), is_tagged=True)
    stored, remaining = suggest_for_untagged(project.pk)
    assert (stored, remaining) == (1, False)
    suggestion = Suggestion.objects.get()
    assert suggestion.image_id == untagged.pk and suggestion.tags[0]["tagName"] == "blue"
    assert not Suggestion.objects.filter(image=tagged).exists()
    assert suggest_for_untagged(project.pk) == (0, False)  # idempotent

    client = client_for(users["annotator"])
    page = client.get(reverse("labeling:image-tag", args=[project.id, untagged.pk]))
    html = page.content.decode()
    assert 'data-testid="accept-suggestion"' in html and "blue" in html
    response = client.post(
        reverse("predictions:suggestion-accept", args=[project.id, untagged.pk]),
        {"version": untagged.version},
    )
    assert response.status_code == 302
    untagged.refresh_from_db()
    assert untagged.is_tagged
    assert list(untagged.image_tags.values_list("tag__name", flat=True)) == ["blue"]
    assert not Suggestion.objects.exists()


def test_suggestions_need_a_trained_iteration(client_for, project, users):
    client = client_for(users["reviewer"])
    response = client.post(reverse("predictions:suggestions-run", args=[project.id]))
    page = client.get(response.url)
    assert "has none yet" in page.content.decode()
