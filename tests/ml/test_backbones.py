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
    assert compact.name == "lite0-levels" and general.name == "lite2-levels"
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
    assert expected.shape == (3, spec.feature_dim) == (3, 1904)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_levels_embedding_pools_blocks_4_to_6_and_the_last_map(tiny_backbone: str) -> None:
    """The domains' embedding: blocks 4, 5 and 6 average-pooled, then the plain network's own
    pooled features, one backbone pass; Grad-CAM's maps pool to exactly that vector."""
    spec = get_backbone(tiny_backbone)
    assert spec.pooled_blocks == (4, 5, 6)
    net = spec.build()
    net.reset_classifier(0)
    pooled: dict[int, torch.Tensor] = {}
    for index in spec.pooled_blocks:
        net.blocks[index].register_forward_hook(
            lambda _module, _inputs, out, index=index: pooled.__setitem__(index, out.mean((2, 3)))
        )
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = net(pixels)
        expected = torch.cat([pooled[4], pooled[5], pooled[6], plain], dim=1)
        embedding = build_feature_extractor(tiny_backbone)(pixels)
        maps = build_feature_extractor(tiny_backbone).forward_features(pixels)
    assert embedding.shape == (2, spec.feature_dim) == expected.shape
    torch.testing.assert_close(embedding, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), embedding, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", [0, 2])
def test_a_plain_backbones_weights_load_into_its_levels_embedding(variant: int) -> None:
    """Iterations fine-tuned on the plain backbone keep loading: the state dicts match."""
    plain = build_feature_extractor(f"lite{variant}").state_dict()
    levels = build_feature_extractor(f"lite{variant}-levels")
    levels.load_state_dict(plain, strict=True)
    spec = get_backbone(f"lite{variant}-levels")
    with torch.inference_mode():
        out = levels(torch.zeros(1, 3, spec.input_size, spec.input_size))
    assert out.shape == (1, spec.feature_dim)
