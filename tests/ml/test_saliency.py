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
    from training.ml.backbones import build_feature_extractor
    from training.ml.preprocessing import PREPROCESSING_VERSION
    from training.ml.saliency import model_crop, saliency_model

    generator = torch.Generator().manual_seed(3)
    state = None
    if fine_tuned:  # a backbone unlike the stock one: its last block's scale changed
        state = build_feature_extractor("lite0").state_dict()
        state["bn2.weight"] = state["bn2.weight"] * 1.5
    artifact = ClassifierArtifact(
        backbone="lite0",
        multilabel=False,
        tag_keys=["a", "b"],
        head_weight=torch.randn(3, 1280, generator=generator) * 0.05,
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
