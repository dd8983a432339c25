"""The feature cache: only new images are opened and embedded; bad images are named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.ml.conftest import encode, photo_dataset, ref_for
from training.ml.backbones import get_backbone
from training.ml.errors import Cancelled, DatasetCorrupt
from training.ml.features import FeatureCache, embed_images


def test_retrain_embeds_only_new_images(tiny_backbone: str, cache: FeatureCache, tmp_path) -> None:
    refs, _ = photo_dataset(per_class=3)
    first = embed_images(refs[:6], backbone=tiny_backbone, cache=cache, batch_size=4)
    assert first.shape == (6, get_backbone(tiny_backbone).feature_dim) and first.dtype == np.float32

    opened: list[str] = []
    counted = [ref_for(ref.open().read(), opened) for ref in refs]
    progress: list[tuple[int, int]] = []
    # A fresh FeatureCache over the same folder: the cache lives on disk, not in the object.
    again = embed_images(
        counted,
        backbone=tiny_backbone,
        cache=FeatureCache(tmp_path / "features"),
        batch_size=4,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert sorted(opened) == sorted(ref.key for ref in refs[6:])
    assert progress[0] == (6, 9) and progress[-1] == (9, 9)
    np.testing.assert_array_equal(again[:6], first)
    assert not list((tmp_path / "features").rglob(".tmp-*"))  # writes were atomic


def test_cache_is_per_backbone_and_embeddings_differ_per_image(
    tiny_backbone: str, cache: FeatureCache
) -> None:
    refs, _ = photo_dataset(per_class=1)
    vectors = embed_images(refs, backbone=tiny_backbone, cache=cache)
    assert not np.allclose(vectors[0], vectors[1])
    assert cache.get_many([ref.key for ref in refs], "lite0") == {}
    assert set(cache.get_many([ref.key for ref in refs], tiny_backbone)) == {r.key for r in refs}


def test_duplicate_refs_are_embedded_once(tiny_backbone: str, cache: FeatureCache) -> None:
    opened: list[str] = []
    data = encode(Image.new("RGB", (20, 20), (0, 90, 0)))
    ref = ref_for(data, opened)
    vectors = embed_images([ref, ref], backbone=tiny_backbone, cache=cache)
    assert opened == [ref.key]
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_first_unreadable_image_is_named(tiny_backbone: str, cache: FeatureCache) -> None:
    refs, _ = photo_dataset(per_class=2)
    bad_one = ref_for(b"\x89PNG\r\n\x1a\n broken")
    bad_two = ref_for(b"GIF89a broken too")
    with pytest.raises(DatasetCorrupt) as caught:
        embed_images([refs[0], bad_one, refs[1], bad_two], backbone=tiny_backbone, cache=cache)
    assert caught.value.item_key == bad_one.key
    assert bad_one.key in str(caught.value)


def test_should_stop_cancels(tiny_backbone: str, cache: FeatureCache) -> None:
    refs, _ = photo_dataset(per_class=2)
    with pytest.raises(Cancelled):
        embed_images(refs, backbone=tiny_backbone, cache=cache, should_stop=lambda: True)
