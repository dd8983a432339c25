"""The packaged ImageNet weights really load, and the fast inference path matches eager."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from training.ml.backbones import (
    BACKBONE_FOR_DOMAIN,
    build_feature_extractor,
    get_backbone,
    imagenet_classifier,
)
from training.ml.inference import build_engine
from training.ml.preprocessing import eval_transform, normalize_batch

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("domain", ["general_compact", "general"])
def test_cat_photo_is_an_imagenet_cat(domain: str) -> None:
    name = BACKBONE_FOR_DOMAIN[domain]
    spec = get_backbone(name)
    model = imagenet_classifier(name)
    pixels = eval_transform(spec)(Image.fromarray(skimage.data.chelsea()))
    with torch.inference_mode():
        probabilities = model(pixels[None]).softmax(dim=1)[0]
    assert int(probabilities.argmax()) in IMAGENET_CATS
    assert float(probabilities[list(IMAGENET_CATS)].sum()) > 0.5


def test_domains_pick_lite0_and_a_larger_backbone() -> None:
    compact = get_backbone(BACKBONE_FOR_DOMAIN["general_compact"])
    general = get_backbone(BACKBONE_FOR_DOMAIN["general"])
    assert compact.name == "lite0"
    assert general.input_size > compact.input_size


def test_unknown_backbone_is_named() -> None:
    with pytest.raises(KeyError, match="lite0"):
        get_backbone("resnet9000")


@pytest.mark.parametrize(
    ("engine", "threads"), [("onnxruntime", None), ("onnxruntime", 1), ("torchscript", None)]
)
def test_fast_engines_match_eager(tiny_backbone: str, engine: str, threads: int | None) -> None:
    spec = get_backbone(tiny_backbone)
    eager = build_feature_extractor(tiny_backbone)
    model = build_feature_extractor(tiny_backbone)
    fast = build_engine(model, spec, engine, threads=threads)  # type: ignore[arg-type]
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = eager(normalize_batch(torch.from_numpy(pixels), spec)).numpy()
    actual = fast(pixels)
    assert expected.shape == (3, 1280)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)
