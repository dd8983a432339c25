"""Grad-CAM (training.ml.saliency) and context reliance (training.ml.context_reliance) on toy
CNNs shaped like our classifiers: a linear head on the pooled last conv map."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from tests.ml.toy_vision import OBJECT, OBJECT_BOX, SIZE, accuracy, make_set, train_toy
from training.ml.context_reliance import box_mask, measure_context_reliance
from training.ml.saliency import grad_cam, overlay_png, top_region

GRID = SIZE // 4  # the toy's conv grid (two 2x poolings)


@pytest.fixture(scope="module")
def object_model():
    return train_toy("object")


@pytest.fixture(scope="module")
def background_model():
    return train_toy("background")


def _object_cells() -> np.ndarray:
    top, bottom, left, right = OBJECT
    inside = np.zeros((GRID, GRID), dtype=bool)
    inside[top // 4 : bottom // 4, left // 4 : right // 4] = True
    return inside


def test_grad_cam_peaks_inside_the_object_for_a_model_that_learned_it(object_model):
    images, labels = make_set("object", 20, seed=7)
    assert accuracy(object_model, images, labels) >= 0.95
    inside = _object_cells()
    for image, label in zip(images, labels, strict=True):
        saliency = object_model.explain(image)
        assert saliency.tag_index == label
        assert saliency.heat.shape == (GRID, GRID)
        peak = np.unravel_index(int(saliency.heat.argmax()), saliency.heat.shape)
        assert inside[peak], f"peak at {peak}, object cells {np.argwhere(inside).tolist()}"
        # The object's 4 cells of 64 are far hotter than the rest.
        assert saliency.heat[inside].mean() > 3 * saliency.heat[~inside].mean()


def test_grad_cam_of_the_background_model_spreads_outside_the_object(background_model):
    images, labels = make_set("background", 10, seed=8)
    assert accuracy(background_model, images, labels) >= 0.95
    inside = _object_cells()
    share = [
        background_model.explain(image).heat[inside].sum()
        / max(background_model.explain(image).heat.sum(), 1e-6)
        for image in images
    ]
    assert float(np.mean(share)) < 0.3


def test_grad_cam_explains_the_tag_asked_for_and_refuses_bad_input(object_model):
    image = make_set("object", 1, seed=9)[0][0]
    assert object_model.explain(image, tag_index=1).tag_index == 1
    with pytest.raises(ValueError, match="tag_index"):
        object_model.explain(image, tag_index=2)  # the background row is never explained
    with pytest.raises(ValueError, match="pixels"):
        grad_cam(
            object_model.conv_features,
            object_model.head_weight,
            object_model.head_bias,
            torch.zeros(3, SIZE, SIZE),
            multilabel=False,
        )


def test_overlay_is_a_translucent_png_of_the_image_shape_with_unseen_strips():
    heat = np.zeros((7, 7), dtype=np.float32)
    heat[3, 3] = 1.0
    data = overlay_png(heat, 800, 400)
    overlay = Image.open(io.BytesIO(data))
    assert overlay.format == "PNG" and overlay.mode == "RGBA"
    assert overlay.size == (512, 256)
    pixels = np.asarray(overlay)
    assert 0 < pixels[128, 256, 3] < 255  # the hot centre: coloured, still see-through
    assert pixels[5, 130, 3] == 0  # a cold corner of the seen square: clear
    assert tuple(pixels[128, 10]) == (128, 128, 128, 110)  # left strip: unseen


def _reliance(model, kind: str, masks: str):
    images, labels = make_set(kind, 24, seed=11)
    if masks == "boxes":
        object_masks = np.stack([box_mask([OBJECT_BOX], SIZE, SIZE)] * len(images))
    else:
        object_masks = np.stack([top_region(model.explain(image).heat, SIZE) for image in images])
    return measure_context_reliance(
        lambda batch: model.probabilities(np.stack(batch)),
        list(images),
        list(object_masks),
        labels,
        multilabel=False,
    )


@pytest.mark.parametrize("masks", ["boxes", "heat"])
def test_context_reliance_flags_a_model_that_learned_the_background(background_model, masks):
    figures = _reliance(background_model, "background", masks)
    assert [f.tag_index for f in figures] == [0, 1]
    assert all(f.is_background_suspect for f in figures), figures
    assert all(f.survives_without_object >= 0.5 for f in figures)


@pytest.mark.parametrize("masks", ["boxes", "heat"])
def test_context_reliance_does_not_flag_a_model_that_learned_the_object(object_model, masks):
    figures = _reliance(object_model, "object", masks)
    assert len(figures) == 2
    assert not any(f.is_background_suspect for f in figures), figures
    # Painting the surroundings barely moves the score; painting the object does.
    assert all(f.object_drop > f.surroundings_drop + 0.2 for f in figures), figures


def test_box_mask_maps_image_boxes_into_the_centre_crop():
    # A 2:1 image: the crop is its middle half; a box over the left quarter lies outside it.
    crop = (0.25, 0.0, 0.5, 1.0)
    assert not box_mask([(0.0, 0.0, 0.25, 1.0)], 8, 8, crop).any()
    inside = box_mask([(0.5, 0.5, 0.25, 0.5)], 8, 8, crop)
    assert inside[4:, 4:].all() and not inside[:4].any() and not inside[:, :4].any()


def test_context_reliance_skips_images_with_nothing_to_compare(object_model):
    images, labels = make_set("object", 2, seed=3)
    empty = [np.zeros((SIZE, SIZE), dtype=bool)] * 2
    full = [np.ones((SIZE, SIZE), dtype=bool)] * 2

    def score(batch):
        return object_model.probabilities(np.stack(batch))

    assert measure_context_reliance(score, list(images), empty, labels, multilabel=False) == []
    assert measure_context_reliance(score, list(images), full, labels, multilabel=False) == []
    with pytest.raises(ValueError, match="object_masks"):
        measure_context_reliance(
            score, list(images), [m[:4] for m in empty], labels, multilabel=False
        )


def test_grad_cam_on_the_real_backbone_peaks_on_the_espresso_cup():
    """Lite0 with its own ImageNet head (a linear layer on the pooled last conv map, the shape
    of our heads): the espresso photo's top class is espresso and the map's peak sits on the
    cup (columns 1-4, rows 0-4 of the 7x7 grid over the centre square), not on the table."""
    import skimage.data

    from training.ml.backbones import imagenet_classifier
    from training.ml.saliency import model_crop

    net = imagenet_classifier("lite0").requires_grad_(False)
    crop = model_crop(Image.fromarray(skimage.data.coffee()), 224)
    pixels = (torch.tensor(crop).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    saliency = grad_cam(
        net.forward_features,
        net.classifier.weight,
        net.classifier.bias,
        pixels,
        multilabel=True,  # all 1000 rows are classes (no background row to drop)
    )
    assert saliency.tag_index == 967  # ImageNet's "espresso"
    assert saliency.heat.shape == (7, 7)
    row, col = np.unravel_index(int(saliency.heat.argmax()), saliency.heat.shape)
    assert row <= 4 and 1 <= col <= 4, (row, col)
    assert saliency.heat[5:].max() < 0.5  # the saucer's rim and the table below stay cool


@pytest.mark.parametrize("fine_tuned", [False, True])
def test_the_saliency_model_scores_as_the_predictor_for_quick_and_advanced_artifacts(fine_tuned):
    """Grad-CAM explains the model predictions come from: the same backbone weights (stock, or
    an advanced iteration's fine-tuned state), head and crop give the Predictor's numbers."""
    import skimage.data

    from training.ml.artifact import ClassifierArtifact, Predictor
    from training.ml.backbones import BACKBONE_FOR_DOMAIN, build_feature_extractor, get_backbone
    from training.ml.preprocessing import PREPROCESSING_VERSION
    from training.ml.saliency import model_crop, saliency_model

    backbone = BACKBONE_FOR_DOMAIN["general_compact"]  # its embedding pools blocks 4-6 too
    generator = torch.Generator().manual_seed(3)
    state = None
    if fine_tuned:  # a backbone unlike the stock one: its last block's scale changed
        state = build_feature_extractor(backbone).state_dict()
        state["bn2.weight"] = state["bn2.weight"] * 1.5
    artifact = ClassifierArtifact(
        backbone=backbone,
        multilabel=False,
        tag_keys=["a", "b"],
        head_weight=torch.randn(3, get_backbone(backbone).feature_dim, generator=generator) * 0.05,
        head_bias=torch.zeros(3),
        backbone_state=state,
        preprocessing_version=PREPROCESSING_VERSION,
    )
    photo = Image.fromarray(skimage.data.coffee())
    model = saliency_model(artifact)
    mine = model.probabilities(model_crop(photo, model.input_size)[None])
    theirs = Predictor(artifact, engine="eager").predict([photo])
    np.testing.assert_allclose(mine, theirs, atol=1e-4)
    assert model.explain(model_crop(photo, model.input_size)).score == pytest.approx(
        float(theirs[0].max()), abs=1e-4
    )


# --- Detection: Grad-CAM of one box (training.ml.detection_saliency) -----------------------


@pytest.fixture(scope="module")
def _one_thread():
    # Tiny models on the shared 2-core machine: 2 OpenMP threads only wait at barriers.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def object_detector(_one_thread):
    from tests.ml import toy_detector

    return toy_detector.train_toy("object")


@pytest.fixture(scope="module")
def background_detector(_one_thread):
    from tests.ml import toy_detector

    return toy_detector.train_toy("background")


def _inside_box(shape: tuple[int, int]) -> np.ndarray:
    from tests.ml.toy_detector import BOX_PX

    x1, y1, x2, y2 = BOX_PX
    inside = np.zeros(shape, dtype=bool)
    inside[y1:y2, x1:x2] = True
    return inside


def test_box_grad_cam_peaks_inside_the_box_of_a_detector_that_learned_the_object(
    object_detector,
):
    from tests.ml.toy_detector import BOX_PX, CONFIG, SIZE, make_set, pil
    from training.ml.detection_saliency import box_grad_cam

    images, positives = make_set("object", 6, seed=9)
    inside = _inside_box((SIZE, SIZE))
    for pixels, positive in zip(images, positives, strict=True):
        if not positive:
            continue
        saliency = box_grad_cam(object_detector, pil(pixels), CONFIG)
        assert saliency is not None and saliency.tag_index == 0
        left, top, width, height = saliency.box  # its top box sits on the object
        x1, y1, x2, y2 = (v / SIZE for v in BOX_PX)
        assert x1 < left + width / 2 < x2 and y1 < top + height / 2 < y2, saliency.box
        assert saliency.score > 0.3
        assert saliency.heat.shape == (SIZE, SIZE)  # the whole image, as the detector saw it
        peak = np.unravel_index(int(saliency.heat.argmax()), saliency.heat.shape)
        assert inside[peak], f"peak at {peak}"
        assert saliency.heat[inside].mean() > 2 * saliency.heat[~inside].mean()


def test_box_grad_cam_explains_a_named_box_and_refuses_bad_input(object_detector):
    from tests.ml.toy_detector import BOX, CONFIG, make_set, pil
    from training.ml.detection_saliency import box_grad_cam

    image = pil(make_set("object", 1, seed=4)[0][0])
    top = box_grad_cam(object_detector, image, CONFIG)
    assert top is not None
    # Naming the top box explains the same location: the same score.
    again = box_grad_cam(object_detector, image, CONFIG, tag_index=0, box=top.box)
    assert again is not None and again.score == pytest.approx(top.score, abs=1e-4)
    named = box_grad_cam(object_detector, image, CONFIG, tag_index=0, box=BOX)
    assert named is not None and named.box == pytest.approx(BOX) and named.score > 0.3
    with pytest.raises(ValueError, match="tag_index"):
        box_grad_cam(object_detector, image, CONFIG, tag_index=3, box=BOX)
    with pytest.raises(ValueError, match="needs its tag_index"):
        box_grad_cam(object_detector, image, CONFIG, box=BOX)
    # A tag the detector never finds in the image: nothing to explain.
    assert box_grad_cam(object_detector, image, CONFIG, tag_index=1) is None


def test_whole_image_overlay_covers_the_image_and_outlines_the_box():
    from training.ml.saliency import whole_image_overlay_png

    heat = np.zeros((30, 40), dtype=np.float32)
    heat[10:20, 25:35] = 1.0
    overlay = Image.open(
        io.BytesIO(whole_image_overlay_png(heat, 800, 600, box=(0.5, 0.25, 0.25, 0.5)))
    )
    assert overlay.mode == "RGBA" and overlay.size == (512, 384)
    pixels = np.asarray(overlay)
    assert 0 < pixels[192, 384, 3] < 255  # hot: coloured, see-through
    assert pixels[350, 50, 3] == 0  # cold: clear, no "unseen" strips for a detector
    assert tuple(pixels[96 + 50, 256]) == (255, 255, 255, 230)  # the box's left edge


def _detector_reliance(model, kind: str):
    from tests.ml.toy_detector import BOX, CONFIG, SIZE, make_set, pil
    from training.ml.detection.evaluate import detect
    from training.ml.detection_saliency import best_box_scores

    images, positives = make_set(kind, 12, seed=11)
    pixels = [image for image, positive in zip(images, positives, strict=True) if positive]
    return measure_context_reliance(
        lambda batch: best_box_scores(detect(model, [pil(b) for b in batch], CONFIG), 1),
        pixels,
        [box_mask([BOX], SIZE, SIZE)] * len(pixels),
        [0] * len(pixels),
        multilabel=True,
    )


def test_box_context_reliance_flags_a_detector_that_learned_the_background(background_detector):
    (figure,) = _detector_reliance(background_detector, "background")
    assert figure.predicted >= 6, figure  # it does find the (empty) box from the band
    assert figure.is_background_suspect, figure
    assert figure.survives_without_object >= 0.5
    assert figure.surroundings_drop > figure.object_drop


def test_box_context_reliance_does_not_flag_a_detector_that_learned_the_object(object_detector):
    (figure,) = _detector_reliance(object_detector, "object")
    assert figure.predicted >= 6, figure
    assert not figure.is_background_suspect, figure
    assert figure.object_drop > figure.surroundings_drop + 0.2, figure
