"""Most gain: one ranking path (tab = bench), model-aware order, and the reason on every row."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from predictions.services.ranking import model_signals, ranked_predictions
from tests.predictions.helpers import crafted_prediction
from tests.training.conftest import make_iteration
from training.services.embeddings import save_training_embeddings, training_embeddings

pytestmark = pytest.mark.django_db


def ranked_iteration(project, *, accuracy: float, labels_per_tag: int = 30):
    """A completed iteration of tags cat and dog with the given held-out top-1 accuracy."""
    from tests.factories import TagFactory

    tags = [TagFactory(project=project, name=name) for name in ("cat", "dog")]
    iteration = make_iteration(project, tags=("cat", "dog"), metrics={"accuracy": accuracy})
    for it_tag, tag in zip(iteration.tags.order_by("index"), tags, strict=True):
        it_tag.tag = tag
        it_tag.image_count = labels_per_tag
        it_tag.save()
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    return iteration


def blob(center: np.ndarray, count: int, seed: int, spread: float = 0.05) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        (center + spread * rng.standard_normal(center.size)).astype(np.float32)
        for _ in range(count)
    ]


def direction(seed: int, dim: int = 64) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim)
    return vector / np.linalg.norm(vector)


def shown(response) -> list[tuple[int, str]]:
    """(image id, reason) of each thumbnail, in page order."""
    html = response.content.decode()
    rows = []
    for chunk in html.split('data-testid="prediction-thumb" data-image-id="')[1:]:
        image_id = int(chunk.split('"', 1)[0])
        reason = ""
        if 'data-testid="gain-reason">' in chunk.split("</li>", 1)[0]:
            reason = chunk.split('data-testid="gain-reason">', 1)[1].split("<", 1)[0]
        rows.append((image_id, reason))
    return rows


def tab(client, project, iteration):
    url = reverse("predictions:prediction-list", args=[project.id])
    return client.get(url, {"iteration": iteration.pk, "sort": "gain"})


def test_the_tab_and_the_bench_rank_the_same_candidates_the_same_way(client_for, project, users):
    from bench.active_learning import first_page

    iteration = ranked_iteration(project, accuracy=0.8, labels_per_tag=6)
    rng = np.random.default_rng(0)
    for i in range(45):
        p = float(rng.uniform(0.3, 0.99))
        crafted_prediction(
            project, iteration, [p, 1 - p], direction(i % 7) + rng.normal(0, 0.1, 64)
        )
    response = tab(client_for(users["reviewer"]), project, iteration)
    tab_order = [image_id for image_id, _ in shown(response)]
    assert len(tab_order) == 40
    assert first_page(project, iteration.pk, 40) == tab_order
    assert first_page(project, iteration.pk, 20) == tab_order[:20]  # a page is a prefix


def test_a_weak_model_shows_typical_images_first_not_its_doubts(client_for, project, users):
    # 2 tags at 0.85: quality 0.7, density trusted; 10 labels a tag: little weight on doubt.
    iteration = ranked_iteration(project, accuracy=0.85, labels_per_tag=1)
    typical = [
        crafted_prediction(project, iteration, [0.9, 0.1], vector)
        for vector in blob(direction(1), 12, seed=1)
    ]
    outliers = [
        crafted_prediction(project, iteration, [0.5, 0.5], direction(100 + i) * 3) for i in range(3)
    ]
    rows = shown(tab(client_for(users["reviewer"]), project, iteration))
    assert rows[0][0] in {p.image_id for p in typical}
    assert rows[0][0] not in {p.image_id for p in outliers}
    assert rows[0][1].startswith("Typical of ")
    assert "none like it labeled yet" in rows[0][1]  # no training embeddings: nothing covered


def test_a_model_near_chance_gets_a_spread_sample_and_says_so(client_for, project, users):
    # 2 tags at 0.68: quality 0.36, density barely trusted and past the random draws' band.
    iteration = ranked_iteration(project, accuracy=0.68)
    for vector in blob(direction(1), 12, seed=1):
        crafted_prediction(project, iteration, [0.9, 0.1], vector)
    rows = shown(tab(client_for(users["reviewer"]), project, iteration))
    assert rows[0][1].startswith("One of ")
    assert "other unlabeled images like it, none like it labeled yet" in rows[0][1]
    assert rows[0][1].endswith("the model is near chance, so its doubt only half counts.")


def test_the_rule_moves_from_doubt_to_a_spread_sample_to_doubt_on_the_models_signal(
    client_for, project, users
):
    """Same candidates, three held-out accuracies of the model (2 tags). At chance the features
    say nothing of the tags, so the model's doubts come first; a little above chance, a spread
    sample; a good model, its doubts again. Each row says which."""
    from django.core.cache import cache

    iteration = ranked_iteration(project, accuracy=0.5)
    rng = np.random.default_rng(3)
    unsure = set()
    for i in range(60):
        p = 0.51 if i < 5 else float(rng.uniform(0.8, 0.99))
        # Six clear regions (noise 0.05 a dimension, |noise| ~0.4 against |direction| 1): with
        # 0.2 the noise outweighed the direction, and for 125 of 300 k-means seeds (the seed is
        # the iteration's id) two of the doubts shared a cluster, so one came after the page's
        # first five (measured; PostgreSQL's ids met one such seed).
        vector = direction(i % 6) + rng.normal(0, 0.05, 64)
        row = crafted_prediction(project, iteration, [p, 1 - p], vector)
        unsure |= {row.image_id} if i < 5 else set()
    client = client_for(users["reviewer"])
    pages = {}
    for accuracy in (0.52, 0.68, 0.98):
        iteration.metrics = {"accuracy": accuracy}
        iteration.save(update_fields=["metrics"])
        cache.clear()  # the order is cached by the open set, which is the same each time
        pages[accuracy] = shown(tab(client, project, iteration))
    for accuracy in (0.52, 0.98):  # quality 0.04 and 0.96
        assert {image_id for image_id, _ in pages[accuracy][:5]} == unsure
        assert pages[accuracy][0][1] == "Unsure between “cat” and “dog”."
    spread = pages[0.68]  # quality 0.36: a spread sample, the doubts not first
    assert {image_id for image_id, _ in spread[:5]} != unsure
    assert spread[0][1].startswith("One of ")


def test_a_model_at_chance_shows_all_its_doubts_first_even_from_one_region(
    client_for, project, users
):
    """Near chance the feature space's regions do not follow the tags: the page is the model's
    doubt alone (margin sampling), not one doubt per region (ml.ranking.clusters_follow_tags)."""
    iteration = ranked_iteration(project, accuracy=0.52)  # quality 0.04
    rng = np.random.default_rng(4)
    unsure = set()
    for i in range(60):
        p = 0.51 if i < 6 else float(rng.uniform(0.8, 0.99))
        vector = direction(0 if i < 12 else i % 6) + rng.normal(0, 0.2, 64)
        row = crafted_prediction(project, iteration, [p, 1 - p], vector)
        unsure |= {row.image_id} if i < 6 else set()
    rows = shown(tab(client_for(users["reviewer"]), project, iteration))
    assert {image_id for image_id, _ in rows[:6]} == unsure


def test_a_good_model_shows_its_doubts_first_with_the_tags_it_hesitates_between(
    client_for, project, users
):
    iteration = ranked_iteration(project, accuracy=0.98)
    sure = [
        crafted_prediction(project, iteration, [0.97, 0.03], vector)
        for vector in blob(direction(2), 10, seed=2)
    ]
    unsure = crafted_prediction(project, iteration, [0.52, 0.48], direction(3))
    rows = shown(tab(client_for(users["reviewer"]), project, iteration))
    assert rows[0] == (unsure.image_id, "Unsure between “cat” and “dog”.")
    assert {image_id for image_id, _ in rows[1:]} == {p.image_id for p in sure}


def test_regions_the_training_set_covers_come_after_uncovered_ones(client_for, project, users):
    iteration = ranked_iteration(project, accuracy=0.68)  # above the random draws' band
    covered_vectors = blob(direction(4), 50, seed=4, spread=0.3)
    covered = {
        crafted_prediction(project, iteration, [0.6, 0.4], vector).image_id
        for vector in covered_vectors
    }
    uncovered = {
        crafted_prediction(project, iteration, [0.6, 0.4], vector).image_id
        for vector in blob(direction(5), 50, seed=5, spread=0.3)
    }
    # The training set holds a twin of every image of the first region.
    save_training_embeddings(iteration.pk, np.stack(covered_vectors))
    assert training_embeddings(iteration.pk).shape == (50, 64)
    rows = shown(tab(client_for(users["reviewer"]), project, iteration))
    assert len(rows) == 40
    assert {image_id for image_id, _ in rows[:10]} <= uncovered  # the covered region waits
    assert all("none like it labeled yet" in reason for _, reason in rows[:10])
    later = [reason for image_id, reason in rows if image_id in covered]
    assert later and "none like it labeled yet" not in later[0]


def test_model_signals_read_the_iterations_own_figures(project):
    iteration = ranked_iteration(project, accuracy=0.75, labels_per_tag=12)
    signals = model_signals(iteration)
    assert signals.quality == pytest.approx(0.5)  # (0.75 - 1/2) / (1 - 1/2)
    assert signals.labels_per_tag == 12


def test_multilabel_reason_names_the_closest_call(db):
    from tests.factories import ProjectFactory, TagFactory

    project = ProjectFactory(kind="multilabel")
    tags = [TagFactory(project=project, name=name) for name in ("mammal", "bird")]
    iteration = make_iteration(project, tags=("mammal", "bird"), metrics={"map": 0.95})
    for it_tag, tag in zip(iteration.tags.order_by("index"), tags, strict=True):
        it_tag.tag, it_tag.image_count = tag, 40
        it_tag.save()
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    crafted_prediction(project, iteration, [0.47, 0.02], direction(6))
    page = ranked_predictions(project=project, iteration_id=iteration.pk, sort="gain")
    assert page.predictions[0].gain_reason == "Near the threshold for “mammal” (0.47 against 0.50)."


def test_most_gain_page_reads_a_fixed_number_of_queries(
    client_for, project, users, django_assert_max_num_queries
):
    iteration = ranked_iteration(project, accuracy=0.9)
    for i, vector in enumerate(blob(direction(7), 60, seed=7, spread=0.5)):
        crafted_prediction(project, iteration, [0.5 + i / 200, 0.5 - i / 200], vector)
    client = client_for(users["reviewer"])
    with django_assert_max_num_queries(20):
        response = tab(client, project, iteration)
    assert len(shown(response)) == 40


def test_a_large_open_set_is_ranked_from_a_sample_that_keeps_the_doubts(
    client_for, project, users, monkeypatch
):
    from predictions.services import ranking

    monkeypatch.setattr(ranking, "MAX_CANDIDATES", 20)
    iteration = ranked_iteration(project, accuracy=0.98)
    rng = np.random.default_rng(8)
    sure = [
        crafted_prediction(project, iteration, [0.97, 0.03], direction(8) + rng.normal(0, 0.3, 64))
        for _ in range(60)
    ]
    unsure = crafted_prediction(project, iteration, [0.5, 0.5], direction(9))
    page = ranked_predictions(project=project, iteration_id=iteration.pk, sort="gain", size=5)
    assert page.predictions[0].pk == unsure.pk  # the least sure share is always read
    assert len(page.predictions) == 5 and page.has_more
    again = ranked_predictions(project=project, iteration_id=iteration.pk, sort="gain", size=5)
    assert [p.pk for p in again.predictions] == [p.pk for p in page.predictions]
    # Dismissing the top one changes the open set: the next request ranks afresh.
    from predictions.services.triage import dismiss_predictions

    dismiss_predictions(project=project, image_ids=[unsure.image_id], by=users["admin"])
    after = ranked_predictions(project=project, iteration_id=iteration.pk, sort="gain", size=5)
    assert unsure.pk not in [p.pk for p in after.predictions]
    assert {p.pk for p in after.predictions} <= {p.pk for p in sure}


def _detection_iteration():
    """A detection project with the tag car and a completed iteration at mAP 0.9, and a way
    to store one of its predictions: seed, boxes (tag, probability, left, top, width, height)
    and the boxes of the mirror image (None: not run mirrored)."""
    import hashlib

    from predictions.model_cache import ModelOutput
    from predictions.services.predict import (
        CheckedImage,
        score_output,
        store_prediction,
        target_for,
    )
    from tests.conftest import make_image
    from tests.factories import ProjectFactory, TagFactory

    project = ProjectFactory(kind="detection")
    tag = TagFactory(project=project, name="car")
    iteration = make_iteration(project, tags=("car",), metrics={"map": 0.9})
    iteration.tags.update(tag=tag, image_count=40)
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    target = target_for(project, iteration)

    def detected(seed: int, boxes: list, mirrored: list | None = None):
        data = make_image(16, 16, (seed, 3, 9))
        checked = CheckedImage(data, hashlib.sha256(data).hexdigest(), "PNG", 16, 16)
        best = np.array([max((box[1] for box in boxes), default=0.0)], dtype=np.float32)
        output = ModelOutput(best, boxes, direction(seed), mirrored)
        return store_prediction(target=target, image=checked, outcome=score_output(target, output))

    return project, iteration, detected


def test_detection_puts_the_box_nearest_the_threshold_first_and_names_it(db):
    project, iteration, store = _detection_iteration()

    def detected(seed: int, probability: float):
        return store(seed, [(0, probability, 0.1, 0.1, 0.5, 0.5)])

    sure = [detected(seed, 0.97) for seed in range(10, 16)]
    doubtful = detected(20, 0.52)
    page = ranked_predictions(project=project, iteration_id=iteration.pk, sort="gain")
    assert page.predictions[0].pk == doubtful.pk
    assert page.predictions[0].gain_reason == "Least sure box “car” 0.52 (threshold 0.50)."
    assert {p.pk for p in page.predictions[1:]} == {p.pk for p in sure}


def test_detection_ranks_by_doubtful_boxes_not_by_one_faint_box_found_one_way_round(db):
    """Many images with one faint box the mirror image misses (stored uncertainty 1.0) and
    one with three boxes near the threshold (0.94): the latter holds more to learn and comes
    first; images with no box come last (the rule before issue 14 item 4 put the faint ones
    first)."""
    project, iteration, store = _detection_iteration()

    def detected(seed: int, probabilities: list[float], mirrored: list):
        boxes = [(0, p, 0.1 + 0.25 * i, 0.1, 0.2, 0.2) for i, p in enumerate(probabilities)]
        return store(seed, boxes, mirrored)

    faint = [detected(seed, [0.3], []) for seed in range(30, 40)]
    empty = [detected(seed, [], []) for seed in range(40, 42)]
    both_ways = [(0, p, 0.7 - 0.25 * i, 0.1, 0.2, 0.2) for i, p in enumerate([0.4, 0.55, 0.62])]
    crowded = detected(50, [0.4, 0.55, 0.62], both_ways)  # found in the mirror image too
    assert min(p.uncertainty for p in faint) > crowded.uncertainty  # what ranked before
    page = ranked_predictions(project=project, iteration_id=iteration.pk, sort="gain")
    assert page.predictions[0].pk == crowded.pk
    assert page.predictions[0].gain_reason == (
        "3 boxes near the threshold, least sure box “car” 0.55 (threshold 0.50)."
    )
    assert {p.pk for p in page.predictions[-2:]} == {p.pk for p in empty}
    assert page.predictions[-1].gain_reason == (
        "No object found: either nothing is there or the model missed it."
    )
    # The native API's keyset pages walk the tab's order, reasons included.
    from predictions.services.stored_pages import stored_prediction_page

    walked, after = [], None
    while True:
        part = stored_prediction_page(
            project=project, iteration_id=iteration.pk, after=after, size=4
        )
        walked += [(p.pk, part.reasons[p.pk]) for p in part.predictions]
        if (after := part.next_cursor) is None:
            break
    assert walked == [(p.pk, p.gain_reason) for p in page.predictions]
