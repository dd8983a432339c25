"""The Predictions tab's pages and forms take any id-shaped input without a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.predictions.test_ranking import ranked_iteration

pytestmark = pytest.mark.django_db

HUGE = str(2**64)


def test_huge_numbers_in_the_tabs_query_show_the_default_page(client_for, project, users):
    ranked_iteration(project, accuracy=0.9)
    client = client_for(users["reviewer"])
    url = reverse("predictions:prediction-list", args=[project.id])
    for query in (
        {"tag": HUGE, "sort": "lowest"},
        {"iteration": HUGE},
        {"page": "9" * 40},
        {"page": HUGE, "sort": "newest"},
    ):
        assert client.get(url, query).status_code == 200, query


def test_huge_ids_in_triage_forms_are_refused_with_a_message(client_for, project, users):
    ranked_iteration(project, accuracy=0.9)
    client = client_for(users["reviewer"])
    for name in ("predictions:prediction-dismiss", "predictions:prediction-review"):
        response = client.post(reverse(name, args=[project.id]), {"image_ids": HUGE}, follow=True)
        assert response.status_code == 200, name
        assert "image_ids" in response.content.decode(), name


def test_a_huge_key_id_is_not_found(client_for, project, users):
    client = client_for(users["admin"])
    url = reverse("predictions:key-list", args=[project.id])
    response = client.post(url, {"action": "rotate", "key_id": HUGE})
    assert response.status_code == 404
