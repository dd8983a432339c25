"""Suggested tags are reviewed in Most-gain order: the Predictions tab's own ranking function
(predictions.services.ranking.gain_order), in the gallery's "Has a suggestion" filter and in the
tagging view's walk over it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from predictions.models import Suggestion, SuggestionRun
from tests.factories import ImageFactory
from tests.predictions.helpers import crafted_prediction
from tests.predictions.test_ranking import direction, ranked_iteration
from training.ml.ranking import compact_embeddings
from training.ml.uncertainty import classification_uncertainty

pytestmark = pytest.mark.django_db

COUNT = 36


def candidates() -> list[tuple[float, np.ndarray]]:
    """(probability of cat, embedding) of each candidate: 6 clusters, distinct doubts."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(COUNT):
        p = float(rng.uniform(0.3, 0.99))
        rows.append((p, (direction(i % 6) + rng.normal(0, 0.1, 64)).astype(np.float32)))
    return rows


def suggested(project, iteration, tag, p: float, vector: np.ndarray):
    """An untagged image with a suggestion stored as the worker stores one."""
    image = ImageFactory(project=project)
    uncertainty = classification_uncertainty(np.array([[p, 1 - p]]), multilabel=False)[0]
    Suggestion.objects.create(
        image=image,
        iteration=iteration,
        tags=[{"tagId": tag.pk, "tagName": tag.name, "probability": max(p, 1 - p)}],
        uncertainty=float(uncertainty),
        embedding=compact_embeddings(vector[None, :])[0].astype("<f2").tobytes(),
    )
    return image


def gallery_order(client, project) -> list[int]:
    url = reverse("labeling:project-detail", args=[project.pk])
    html = client.get(url, {"filter": "suggested"}).content.decode()
    return [int(i) for i in re.findall(r'data-testid="thumb" data-image-id="(\d+)"', html)]


def test_suggestions_walk_in_the_order_the_tab_and_the_bench_give_the_same_candidates(
    client_for, project, users
):
    from bench.active_learning import first_page

    iteration = ranked_iteration(project, accuracy=0.8, labels_per_tag=6)
    cat = project.tags.get(name="cat")
    rows = candidates()
    by_prediction = {
        crafted_prediction(project, iteration, [p, 1 - p], vector).image_id: i
        for i, (p, vector) in enumerate(rows)
    }
    by_suggestion = {
        suggested(project, iteration, cat, p, vector).pk: i for i, (p, vector) in enumerate(rows)
    }
    now = timezone.now()
    SuggestionRun.objects.create(project=project, iteration=iteration, started=now, updated=now)

    tab = [by_prediction[i] for i in first_page(project, iteration.pk, COUNT)]
    client = client_for(users["annotator"])
    shown = gallery_order(client, project)  # the first gallery page: 30 of 36
    assert len(shown) == 30
    assert [by_suggestion[i] for i in shown] == tab[:30]
    # Newest first would be a different order: the check above is not a coincidence.
    assert shown != sorted(shown, reverse=True)

    # The tagging view walks the same order, and keeps its place after an accept.
    second, third = shown[1], shown[2]
    url = reverse("labeling:image-tag", args=[project.pk, second])
    html = client.get(url, {"filter": "suggested"}).content.decode()
    assert f"/images/{third}/?filter=suggested" in html
    assert f"/images/{shown[0]}/?filter=suggested" in html
    accept = reverse("predictions:suggestion-accept", args=[project.pk, second])
    reviewer = client_for(users["reviewer"])
    response = reviewer.post(accept, {"return_query": "filter=suggested"})
    assert response.status_code == 302
    assert not Suggestion.objects.filter(image_id=second).exists()
    html = reviewer.get(url, {"filter": "suggested"}).content.decode()
    assert f"/images/{third}/?filter=suggested" in html  # → goes on where it was
    assert second not in gallery_order(reviewer, project)


def test_a_new_suggestion_is_ranked_in(client_for, project, users):
    iteration = ranked_iteration(project, accuracy=0.98)  # a good model: its doubts first
    cat = project.tags.get(name="cat")
    for i, vector in enumerate(direction(s) for s in range(8)):
        suggested(project, iteration, cat, 0.97 - i * 0.001, vector)
    now = timezone.now()
    SuggestionRun.objects.create(project=project, iteration=iteration, started=now, updated=now)
    client = client_for(users["annotator"])
    assert len(gallery_order(client, project)) == 8
    unsure = suggested(project, iteration, cat, 0.51, direction(99))
    assert gallery_order(client, project)[0] == unsure.pk


def test_detection_suggestions_walk_by_doubtful_boxes_in_the_tabs_order(monkeypatch, db):
    """Detection suggestions keep every box the model returned and its flip disagreement, and
    walk in the tab's order for the same outputs: an image with three boxes near the threshold
    (one below it, so not suggested) comes before images with one box the mirror image misses,
    whose stored uncertainty is higher (the walk ranked them first before)."""
    from predictions.model_cache import ModelOutput
    from predictions.services import suggestions
    from predictions.services.predict import score_output
    from predictions.services.ranking import ranked_predictions
    from tests.predictions.test_ranking import _detection_iteration

    project, iteration, store = _detection_iteration()
    crowded = [(0, p, 0.1 + 0.25 * i, 0.1, 0.2, 0.2) for i, p in enumerate([0.4, 0.55, 0.62])]
    mirrored = [(0, p, 0.7 - 0.25 * i, 0.1, 0.2, 0.2) for i, p in enumerate([0.4, 0.55, 0.62])]
    cases = [(seed, [(0, 0.6, 0.1, 0.1, 0.3, 0.3)], []) for seed in range(30, 36)]
    cases.append((50, crowded, mirrored))
    sure = [(0, 0.97, 0.2, 0.2, 0.3, 0.3)]
    cases += [(seed, sure, [(0, 0.97, 0.5, 0.2, 0.3, 0.3)]) for seed in range(60, 64)]

    def output(seed, boxes, mirror):
        best = np.array([max(box[1] for box in boxes)], dtype=np.float32)
        return ModelOutput(best, boxes, direction(seed), mirror)

    by_prediction = {store(*case).pk: i for i, case in enumerate(cases)}
    images = [ImageFactory(project=project) for _ in cases]
    outputs = {image.sha256: output(*case) for image, case in zip(images, cases, strict=True)}
    monkeypatch.setattr(
        suggestions,
        "run_model",
        lambda target, checked: score_output(target, outputs[checked.sha256]),
    )
    now = timezone.now()
    SuggestionRun.objects.create(project=project, iteration=iteration, started=now, updated=now)
    assert suggestions.suggest_for_untagged(project.pk) == (len(cases), False)
    by_image = {image.pk: i for i, image in enumerate(images)}

    kept = Suggestion.objects.get(image=images[6])
    assert kept.box_probabilities == pytest.approx([0.62, 0.55, 0.4])
    assert [box["probability"] for box in kept.boxes] == pytest.approx([0.62, 0.55])
    lone = Suggestion.objects.get(image=images[0])
    assert lone.flip_disagreement == pytest.approx(1.0)
    assert lone.uncertainty > kept.uncertainty  # the order before: stored uncertainty first

    walk = [by_image[i] for i in suggestions.suggestion_gain_order(project)]
    page = ranked_predictions(project=project, iteration_id=iteration.pk, sort="gain")
    assert walk[0] == 6
    assert walk == [by_prediction[p.pk] for p in page.predictions]
