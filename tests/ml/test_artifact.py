"""Artifacts round-trip through a file; the Predictor agrees with the training pipeline."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from tests.ml.conftest import photo_dataset
from training.ml.artifact import ClassifierArtifact, Predictor, load_artifact, save_artifact
from training.ml.backbones import get_backbone
from training.ml.features import FeatureCache, embed_images
from training.ml.preprocessing import PREPROCESSING_VERSION, load_rgb
from training.ml.quick import train_quick


def test_round_trip_gives_the_same_predictions(tiny_backbone: str, cache: FeatureCache) -> None:
    refs, targets = photo_dataset(per_class=4)
    features = embed_images(refs, backbone=tiny_backbone, cache=cache)
    result = train_quick(features, targets, multilabel=False)
    artifact = ClassifierArtifact.from_quick(
        result.head,
        backbone=tiny_backbone,
        tag_keys=["cat", "coffee", "rocket"],
        preprocessing_version=PREPROCESSING_VERSION,
        threshold=0.4,
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    buffer.seek(0)
    loaded = load_artifact(buffer)
    assert loaded.tag_keys == ["cat", "coffee", "rocket"] and loaded.threshold == 0.4
    assert loaded.backbone_state is None and not loaded.multilabel
    torch.testing.assert_close(loaded.head_weight, artifact.head_weight)

    images = [load_rgb(ref.open().read()) for ref in refs]
    original = Predictor(artifact).predict(images)
    reloaded = Predictor(loaded).predict(images)
    np.testing.assert_allclose(reloaded, original, atol=1e-6)
    # The predictor sees exactly what training saw: same pixels, same backbone.
    np.testing.assert_allclose(original, result.head.probabilities(features), atol=1e-4)
    assert (original.argmax(axis=1) == targets.argmax(axis=1)).all()


def test_concurrent_predict_calls_agree(tiny_backbone: str, cache: FeatureCache) -> None:
    refs, targets = photo_dataset(per_class=3)
    features = embed_images(refs, backbone=tiny_backbone, cache=cache)
    head = train_quick(features, targets, multilabel=True).head
    predictor = Predictor(
        ClassifierArtifact.from_quick(
            head, backbone=tiny_backbone, tag_keys=["a", "b", "c"], preprocessing_version=1
        )
    )
    images = [Image.open(ref.open()).convert("RGB") for ref in refs]
    expected = predictor.predict(images)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: predictor.predict([images[i]]), range(len(images))))
    np.testing.assert_allclose(np.concatenate(results), expected, atol=1e-5)
    assert predictor.embed(images[:2]).shape == (2, get_backbone(tiny_backbone).feature_dim)
