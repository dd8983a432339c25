"""Detection Most gain: boxes the model disagrees with itself about under a horizontal flip.

A toy detector finds bright squares by their pixels. One variant is consistent (it finds a
square wherever it is, so mirrored it finds the mirrored square); the other only sees squares in
the left half of the picture, as a model that has not learnt an object yet finds it one way
round only. The signal tells them apart, is stored with the prediction, and the tab says why.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image, ImageOps

from labeling.models import Project
from predictions.model_cache import ModelOutput
from predictions.models import Prediction
from predictions.services.predict import CheckedImage, score_output, store_prediction, target_for
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory, TagFactory
from tests.predictions.test_ranking import direction
from tests.training.conftest import make_iteration
from training.ml.uncertainty import flip_disagreement, unflip_box, with_flip_disagreement

Box = tuple[int, float, float, float, float, float]


def picture(left: int, size: int = 64, side: int = 16) -> Image.Image:
    """A dark picture with one bright square at `left` px."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[20 : 20 + side, left : left + side] = 230
    return Image.fromarray(pixels)


def toy_detector(image: Image.Image, *, left_half_only: bool = False) -> list[Box]:
    """The bright square's box (tag 0, probability 0.9), normalised; [] when none is seen."""
    bright = np.asarray(image.convert("L")) > 128
    if not bright.any():
        return []
    ys, xs = np.nonzero(bright)
    h, w = bright.shape
    box = (
        0,
        0.9,
        xs.min() / w,
        ys.min() / h,
        (xs.max() + 1 - xs.min()) / w,
        (ys.max() + 1 - ys.min()) / h,
    )
    if left_half_only and box[2] + box[4] / 2 >= 0.5:
        return []
    return [box]


def both_ways(image: Image.Image, **kind) -> tuple[list[Box], list[Box]]:
    return toy_detector(image, **kind), toy_detector(ImageOps.mirror(image), **kind)


def test_a_detector_that_finds_the_object_both_ways_round_agrees_with_itself():
    for left in (4, 24, 40):
        disagreement, count = flip_disagreement(*both_ways(picture(left)))
        assert disagreement == pytest.approx(0.0, abs=1e-6)
        assert count == 0


def test_a_detector_that_finds_the_object_one_way_round_only_disagrees():
    disagreement, count = flip_disagreement(*both_ways(picture(4), left_half_only=True))
    assert disagreement == pytest.approx(1.0)
    assert count == 1
    # The same object on the right: found only in the mirror image, still a disagreement.
    assert flip_disagreement(*both_ways(picture(44), left_half_only=True)) == (1.0, 1)


def test_unflipping_puts_a_mirrored_box_back_and_probability_gaps_count():
    box: Box = (0, 0.8, 0.1, 0.2, 0.3, 0.4)
    mirrored: Box = (0, 0.8, 0.6, 0.2, 0.3, 0.4)
    assert unflip_box(mirrored)[2] == pytest.approx(0.1)
    assert flip_disagreement([box], [mirrored])[0] == pytest.approx(0.0)
    weak = (0, 0.4, 0.6, 0.2, 0.3, 0.4)
    disagreement, count = flip_disagreement([box], [weak])
    assert disagreement == pytest.approx(0.4)  # |0.8 - 0.4|, weighted by the higher 0.8
    assert count == 1
    assert flip_disagreement([], []) == (0.0, 0)
    assert flip_disagreement([(0, 0.1, 0.1, 0.1, 0.1, 0.1)], []) == (0.0, 0)  # faint: ignored
    assert with_flip_disagreement(0.5, 0.5) == pytest.approx(0.75)


@pytest.mark.django_db
def test_the_tab_ranks_boxes_that_disagree_under_flip_first_and_says_so(client_for, users):
    project = ProjectFactory(kind=Project.Kind.DETECTION)
    MembershipFactory(project=project, user=users["reviewer"], role="reviewer")
    tag = TagFactory(project=project, name="car")
    iteration = make_iteration(project, tags=("car",), metrics={"map": 0.95})
    iteration.tags.update(tag=tag, image_count=40)
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=True)
    target = target_for(project, iteration)

    def stored(seed: int, left: int, **kind) -> Prediction:
        boxes, mirrored = both_ways(picture(left), **kind)
        if not boxes:  # the one-way-round detector: give it a sure box the mirror lacks
            boxes, mirrored = [(0, 0.9, left / 64, 20 / 64, 0.25, 0.25)], []
        best = np.array([max((b[1] for b in boxes), default=0.0)], dtype=np.float32)
        output = ModelOutput(best, boxes, direction(seed), mirrored)
        data = make_image(16, 16, (seed, 5, 9))
        checked = CheckedImage(data, hashlib.sha256(data).hexdigest(), "PNG", 16, 16)
        return store_prediction(target=target, image=checked, outcome=score_output(target, output))

    consistent = [stored(seed, 24) for seed in range(10, 16)]
    one_way = stored(30, 44, left_half_only=True)
    assert one_way.flip_disagreement == pytest.approx(1.0)
    assert one_way.uncertainty == pytest.approx(1.0)
    assert {p.flip_disagreement for p in consistent} == {0.0}
    assert Prediction.objects.get(pk=consistent[0].pk).uncertainty < 0.5

    url = reverse("predictions:prediction-list", args=[project.id])
    response = client_for(users["reviewer"]).get(url, {"iteration": iteration.pk, "sort": "gain"})
    assert response.status_code == 200
    html = response.content.decode()
    first = html.split('data-testid="prediction-thumb" data-image-id="')[1]
    assert first.startswith(f'{one_way.image_id}"')
    reason = first.split('data-testid="gain-reason">', 1)[1].split("<", 1)[0]
    assert reason == "Boxes disagree under flip; least sure box “car” 0.90 (threshold 0.50)."


@pytest.mark.django_db
def test_only_stored_detections_pay_for_the_mirror_pass(users):
    from predictions.services.keys import create_key
    from predictions.services.predict import DETECT, resolve_target

    project = ProjectFactory(kind=Project.Kind.DETECTION, owner=users["admin"])
    MembershipFactory(project=project, user=users["admin"], role="admin")
    iteration = make_iteration(project, tags=("car",))
    iteration.artifact.save("model.pt", ContentFile(b"unused"), save=False)
    iteration.published_name = "live"
    iteration.save()
    secret = create_key(project=project, name="k", by=users["admin"]).secret

    def target(store: bool):
        return resolve_target(
            project_id=project.pk, publish_name="live", secret=secret, kind=DETECT, store=store
        )

    assert target(store=True).check_flip is True
    assert target(store=False).check_flip is False
