"""Words a user reads on the training pages say what the controls do, and only what is true."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import UserFactory
from tests.training.conftest import make_iteration
from training.models import Iteration

pytestmark = pytest.mark.django_db


def test_nothing_changed_refusal_names_the_checkbox_the_form_shows(
    client_for, project, users, build_dataset
):
    build_dataset(project, {"red": 5, "green": 5})
    client = client_for(users["admin"])
    url = reverse("training:train", args=[project.id])
    client.post(url, {"training_type": "quick"})
    Iteration.objects.update(status=Iteration.Status.COMPLETED)
    response = client.post(url, {"training_type": "quick"})
    assert response.status_code == 422
    html = response.content.decode()
    assert "tick “Train even if nothing changed”" in html
    assert "“force”" not in html
    assert html.count("Train even if nothing changed") == 2  # the message and the checkbox


def test_new_project_page_promises_no_model_export(client_for, db):
    staff = UserFactory(is_staff=True)
    html = client_for(staff).get(reverse("labeling:project-create")).content.decode()
    assert "export" not in html.lower()
    assert "General (compact)" in html


def test_csv_import_format_is_named_without_a_stray_comma(client_for, project, users):
    html = client_for(users["admin"]).get(reverse("labeling:datasets", args=[project.id]))
    html = html.content.decode()
    assert "CSV file,tags" not in html
    assert "CSV: file and tags columns (classification)" in html


@pytest.mark.parametrize("name", ["my model", "v2/beta", "prod?x=1", "modèle", "a.b"])
def test_publish_names_are_url_safe(client_for, project, users, name):
    iteration = make_iteration(project, rows=[([0], [0.9, 0.1]), ([1], [0.2, 0.8])])
    url = reverse("training:iteration-publish", args=[project.id, iteration.id])
    response = client_for(users["admin"]).post(url, {"name": name}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "use only letters, digits, hyphens (-) and underscores (_)" in response.content.decode()
    iteration.refresh_from_db()
    assert iteration.published_name == ""


def test_a_url_safe_publish_name_is_accepted(client_for, project, users):
    iteration = make_iteration(project, rows=[([0], [0.9, 0.1]), ([1], [0.2, 0.8])])
    url = reverse("training:iteration-publish", args=[project.id, iteration.id])
    response = client_for(users["admin"]).post(url, {"name": "Model-v2_1"})
    assert response.status_code == 302
    iteration.refresh_from_db()
    assert iteration.published_name == "Model-v2_1"


def test_precision_with_nothing_predicted_is_a_dash_not_zero(client_for, project, users):
    rows = [([0], [0.9, 0.1]), ([1], [0.2, 0.8])]
    iteration = make_iteration(project, rows=rows, suggested_threshold=1.0)
    url = reverse("training:iteration-performance", args=[project.id, iteration.id])
    response = client_for(users["reviewer"]).get(url)
    figures = response.context["figures"]
    assert figures["precision"] is None
    assert [tag["precision"] for tag in figures["per_tag"]] == [None, None]
    html = response.content.decode()
    assert 'data-testid="overall-precision">—<' in html
    assert 'data-testid="precision-0">—<' in html
