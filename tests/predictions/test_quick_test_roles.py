"""Quick test: an annotator may test an image but not store it (as in the Predictions tab)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Image
from predictions.models import Prediction
from predictions.services.predict import quick_test
from project.errors import Forbidden
from tests.conftest import make_image
from tests.training.conftest import make_iteration

pytestmark = pytest.mark.django_db


def test_annotator_storing_a_quick_test_is_refused_with_the_reason(client_for, project, users):
    # The refusal comes before the model runs: this iteration's model file does not even exist.
    iteration = make_iteration(project, artifact="iterations/0/model.pt")
    response = client_for(users["annotator"]).post(
        reverse("predictions:quick-test", args=[project.id]),
        {
            "iteration": iteration.pk,
            "image": SimpleUploadedFile("t.png", make_image(40, 40), "image/png"),
            "store": "1",
        },
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "Annotators can test an image but not store it" in html
    assert 'data-testid="quick-test-error"' in html
    assert not Prediction.objects.exists()
    assert not Image.objects.filter(source=Image.Source.PREDICTION).exists()


def test_the_service_refuses_an_annotators_store_whatever_the_caller(project, users):
    iteration = make_iteration(project, artifact="iterations/0/model.pt")
    with pytest.raises(Forbidden):
        quick_test(
            project=project,
            iteration_id=iteration.pk,
            data=make_image(40, 40),
            store=True,
            by=users["annotator"],
        )
    assert not Prediction.objects.exists()
