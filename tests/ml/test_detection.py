"""Detector core: augmentation moves boxes with pixels, training learns, predictions are clean."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torchvision import tv_tensors

from training.ml.data import ImageRef
from training.ml.detection import (
    AugmentConfig,
    DetectorConfig,
    DetectorPredictor,
    TrainAugment,
    TrainOptions,
    holdout_split,
    load_detector_artifact,
    save_detector_artifact,
    train_detector,
)
from training.ml.detection.augment import MIN_VISIBLE_FRACTION, to_normalized_boxes, to_pixel_boxes
from training.ml.detection.model import PyramidBackbone, build_detector
from training.ml.detection_metrics import box_iou
from training.ml.errors import BudgetExhausted, Cancelled, DatasetCorrupt, TrainingDiverged

# Small enough that a training step takes a fraction of a second on 2 cores.
TINY = DetectorConfig(image_size_px=96, max_size_px=128, train_scales=(1.0,))
RED, GREEN = (255, 0, 0), (0, 255, 0)


def _ref(data: bytes) -> ImageRef:
    return ImageRef(key=hashlib.sha256(data).hexdigest(), open=lambda: io.BytesIO(data))


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _color_box(image: torch.Tensor, color: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Pixel extent (x1, y1, x2, y2) of pixels of exactly this colour (x2, y2 exclusive)."""
    match = (image == torch.tensor(color, dtype=image.dtype)[:, None, None]).all(dim=0)
    ys, xs = torch.nonzero(match, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("seed", range(12))
def test_boxes_follow_the_image_under_flips_and_crops(seed):
    torch.manual_seed(seed)
    image = torch.zeros(3, 90, 120, dtype=torch.uint8)
    red, green = (10, 20, 50, 60), (70, 5, 110, 40)  # x1, y1, x2, y2
    image[:, red[1] : red[3], red[0] : red[2]] = torch.tensor(RED)[:, None, None]
    image[:, green[1] : green[3], green[0] : green[2]] = torch.tensor(GREEN)[:, None, None]
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([red, green], dtype=torch.float32), format="XYXY", canvas_size=(90, 120)
    )
    augment = TrainAugment(AugmentConfig(photometric_p=0.0, flip_p=0.5, crop_p=1.0))

    out_image, out_boxes, out_labels = augment(image, boxes, torch.tensor([0, 1]))

    assert out_boxes.canvas_size == tuple(out_image.shape[-2:])
    for box, label in zip(out_boxes.tolist(), out_labels.tolist(), strict=True):
        visible = _color_box(out_image, (RED, GREEN)[label])
        assert box == pytest.approx(list(visible), abs=1.0)
    for label, original in enumerate((red, green)):
        if label not in out_labels.tolist():  # dropped: (almost) cut out of the crop
            color = torch.tensor((RED, GREEN)[label], dtype=torch.uint8)[:, None, None]
            visible = int((out_image == color).all(dim=0).sum())
            area = (original[2] - original[0]) * (original[3] - original[1])
            assert visible < MIN_VISIBLE_FRACTION * area


def test_flip_mirrors_the_box():
    image = torch.zeros(3, 40, 100, dtype=torch.uint8)
    image[:, 5:15, 10:30] = torch.tensor(RED)[:, None, None]
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[10.0, 5.0, 30.0, 15.0]]), format="XYXY", canvas_size=(40, 100)
    )
    augment = TrainAugment(AugmentConfig(photometric_p=0.0, flip_p=1.0, crop_p=0.0))

    out_image, out_boxes, _ = augment(image, boxes, torch.tensor([0]))

    assert out_boxes.tolist() == [[70.0, 5.0, 90.0, 15.0]]
    assert _color_box(out_image, RED) == (70, 5, 90, 15)


def test_normalized_boxes_round_trip_through_pixels():
    boxes = [(2, 0.1, 0.2, 0.3, 0.4), (0, 0.0, 0.5, 1.0, 0.5)]

    xyxy, labels = to_pixel_boxes(boxes, 640, 480)

    assert xyxy[0].tolist() == pytest.approx([64.0, 96.0, 256.0, 288.0])
    assert labels.tolist() == [2, 0]
    back = to_normalized_boxes(xyxy, 640, 480)
    assert back == [pytest.approx(b[1:]) for b in boxes]


def test_holdout_split_is_stratified_by_the_rarest_tag():
    boxes = [[(0, 0.1, 0.1, 0.2, 0.2)]] * 40 + [
        [(0, 0.1, 0.1, 0.2, 0.2), (1, 0.5, 0.5, 0.2, 0.2)]
    ] * 10
    boxes += [[]] * 10  # negatives

    train, held = holdout_split(boxes, num_tags=2, fraction=0.2, rng=np.random.default_rng(0))

    assert sorted([*train, *held]) == list(range(60))
    assert sum(1 for i in held if i < 40) == 8
    assert sum(1 for i in held if 40 <= i < 50) == 2
    assert sum(1 for i in held if i >= 50) == 2


def _toy_dataset(count: int = 10, seed: int = 0) -> tuple[list[ImageRef], list[list[tuple]]]:
    """128x96 noisy photographs with the cat's face (tag 0) and a rocket (tag 1) pasted in."""
    rng = np.random.default_rng(seed)
    cat = Image.fromarray(skimage.data.chelsea()).crop((40, 10, 400, 300)).resize((40, 32))
    rocket = Image.fromarray(skimage.data.rocket()).crop((295, 125, 347, 410)).resize((12, 56))
    refs, boxes = [], []
    for index in range(count):
        noise = rng.integers(60, 140, size=(96, 128, 3), dtype=np.uint8)
        canvas = Image.fromarray(noise)
        image_boxes = []
        for tag, patch in enumerate((cat, rocket)):
            if index % 5 == 4 or (tag == 1 and index % 2):
                continue  # every fifth image is a negative; rockets on every other
            x = int(rng.integers(0, 128 - patch.width)) if tag == 0 else 100
            y = int(rng.integers(0, 96 - patch.height)) if tag == 0 else 20
            if tag == 0:
                x = min(x, 100 - patch.width)  # keep the cat clear of the rocket's column
            canvas.paste(patch, (x, y))
            image_boxes.append((tag, x / 128, y / 96, patch.width / 128, patch.height / 96))
        refs.append(_ref(_jpeg(canvas)))
        boxes.append(image_boxes)
    return refs, boxes


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # On the shared 2-core machine, 2 OpenMP threads measured up to 15x slower than 1 when
    # the other core is busy (threads wait at barriers); these tiny models gain nothing from 2.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _overfit(options: TrainOptions):
    refs, boxes = _toy_dataset()
    phases: list[tuple[str, float]] = []
    result = train_detector(
        refs,
        boxes,
        num_tags=2,
        backbone="lite0",
        budget_s=600,
        seed=0,
        on_progress=lambda phase, fraction: phases.append((phase, fraction)),
        config=TINY,
        options=options,
    )
    return refs, boxes, result, phases


@pytest.fixture(scope="module")
def overfit():
    """The default (frozen backbone, cached maps) recipe, run to memorise the toy set."""
    return _overfit(TrainOptions(max_epochs=12, lr=3e-3, batch_size=4))


def test_tiny_overfit_run_loss_drops(overfit):
    _, _, result, phases = overfit

    assert result.epochs == 12
    assert result.epoch_losses[-1] < 0.6 * result.epoch_losses[0]
    assert phases[-1] == ("done", 1.0)
    assert all(0.0 <= fraction <= 1.0 for _, fraction in phases)


@pytest.mark.parametrize("cached_prefix", [True, False], ids=["cached-prefix", "legacy"])
def test_end_to_end_fine_tuning_loss_drops(cached_prefix):
    _, _, result, _ = _overfit(
        TrainOptions(
            max_epochs=6, lr=3e-3, batch_size=4, frozen_backbone=False, cached_prefix=cached_prefix
        )
    )

    assert result.epochs == 6
    assert result.epoch_losses[-1] < 0.7 * result.epoch_losses[0]


def test_the_prefix_and_the_rest_of_the_body_give_the_body_s_maps():
    backbone = build_detector("lite0", 2, TINY).backbone.eval()
    images = torch.rand(2, 3, 96, 128)

    with torch.no_grad():
        whole = backbone.body(images)
        split = {b: backbone.pyramid_inputs_from(backbone.prefix(images, b), b) for b in (2, 3, 5)}

    for maps in split.values():
        assert len(maps) == 3
        assert all(torch.equal(a, b) for a, b in zip(whole, maps, strict=True))


def test_every_box_distance_of_a_fresh_detector_starts_alive():
    # torchvision's FCOS head puts its distances through a ReLU from zero-centred weights: about
    # half start at 0, where no gradient reaches them, and small training sets collapsed.
    model = build_detector("lite0", 2, TINY).eval()
    images = torch.rand(2, 3, 96, 128)

    with torch.no_grad():
        features = list(model.backbone(images).values())
        distances, _ = model.head.regression_head(features)

    assert distances.numel() > 0
    assert (distances > 0).all()


def test_end_to_end_runs_the_frozen_prefix_once_per_view_and_trains_only_later_blocks(
    monkeypatch,
):
    calls = []
    prefix = PyramidBackbone.prefix

    def counted(self, x, block):
        calls.append(len(x))
        return prefix(self, x, block)

    monkeypatch.setattr(PyramidBackbone, "prefix", counted)
    options = TrainOptions(max_epochs=6, lr=3e-3, batch_size=4, frozen_backbone=False)
    _, _, result, _ = _overfit(options)
    fresh = build_detector("lite0", 2, TINY).state_dict()

    # Once per cached view, not once per image per epoch (6 x the images).
    assert 0 < sum(calls) <= options.cached_views * result.trained_images
    frozen = [name for name in fresh if name.startswith("backbone.body.blocks_1.")]
    trained = [name for name in fresh if name.startswith("backbone.body.blocks_3.")]
    assert frozen and trained
    assert all(torch.equal(result.state[name], fresh[name]) for name in frozen)
    assert any(not torch.equal(result.state[name], fresh[name]) for name in trained)


def test_predictions_are_normalized_sorted_and_after_nms(overfit):
    refs, boxes, result, _ = overfit
    buffer = io.BytesIO()
    save_detector_artifact(result.to_artifact(backbone="lite0", num_tags=2), buffer)
    buffer.seek(0)
    predictor = DetectorPredictor(load_detector_artifact(buffer))
    images = [Image.open(ref.open()) for ref in refs]

    predictions = predictor.predict(images)

    assert len(predictions) == len(images)
    assert sum(len(p) for p in predictions) > 0
    for detections in predictions:
        probabilities = [d[1] for d in detections]
        assert probabilities == sorted(probabilities, reverse=True)
        for tag, probability, left, top, width, height in detections:
            assert tag in (0, 1)
            assert 0.0 <= probability <= 1.0
            assert left >= 0.0 and top >= 0.0 and width > 0 and height > 0
            assert left + width <= 1.0 + 1e-6 and top + height <= 1.0 + 1e-6
        for tag in (0, 1):
            same = np.asarray([d[2:] for d in detections if d[0] == tag]).reshape(-1, 4)
            overlaps = box_iou(same, same) - np.eye(len(same))
            assert (overlaps <= TINY.nms_iou + 1e-6).all()
    # The overfit model finds the cat where it was pasted, as its most confident cat box.
    hits = 0
    for detections, truth in zip(predictions, boxes, strict=True):
        cats = [d for d in detections if d[0] == 0]
        if truth and cats:
            iou = box_iou(np.asarray([cats[0][2:]]), np.asarray([truth[0][1:]]))[0, 0]
            hits += iou >= 0.5
    assert hits >= 6  # of the 8 images with a cat
    # The predictor reproduces what training reported for the held-out images.
    for index, held in zip(result.holdout_index, result.holdout_detections, strict=True):
        assert len(predictions[index]) == len(held)
        for ours, theirs in zip(predictions[index], held, strict=True):
            assert ours[0] == theirs[0]
            assert ours[1:] == pytest.approx(theirs[1:], abs=1e-4)


def test_a_budget_too_small_for_one_epoch_is_refused():
    refs, boxes = _toy_dataset()

    with pytest.raises(BudgetExhausted, match="ran out"):
        train_detector(refs, boxes, num_tags=2, backbone="lite0", budget_s=0.01, config=TINY)


def test_a_non_finite_loss_is_reported_as_diverged():
    refs, boxes = _toy_dataset()

    with pytest.raises(TrainingDiverged):
        train_detector(
            refs,
            boxes,
            num_tags=2,
            backbone="lite0",
            budget_s=120,
            config=TINY,
            options=TrainOptions(lr=1e12, max_epochs=3),
        )


def test_should_stop_cancels_training():
    refs, boxes = _toy_dataset()

    with pytest.raises(Cancelled):
        train_detector(
            refs,
            boxes,
            num_tags=2,
            backbone="lite0",
            budget_s=60,
            config=TINY,
            should_stop=lambda: True,
        )


def test_an_unreadable_image_is_named():
    refs, boxes = _toy_dataset()
    broken = _ref(b"not an image at all")
    refs = [broken, *refs[1:]]

    with pytest.raises(DatasetCorrupt) as caught:
        train_detector(refs, boxes, num_tags=2, backbone="lite0", budget_s=60, config=TINY)

    assert caught.value.item_key == broken.key


def test_a_box_outside_the_image_is_refused():
    refs, boxes = _toy_dataset()
    boxes[0] = [(0, 0.8, 0.1, 0.5, 0.2)]

    with pytest.raises(ValueError, match="inside the unit square"):
        train_detector(refs, boxes, num_tags=2, backbone="lite0", budget_s=60, config=TINY)
