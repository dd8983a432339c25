"""Near-duplicates on real lite0 embeddings: copies are found, other photos are not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.ml.conftest import encode, ref_for
from training.ml.duplicates import near_duplicate_groups, near_duplicate_pairs
from training.ml.features import FeatureCache, embed_images


def _quadrant(name: str, qx: int, qy: int) -> Image.Image:
    import skimage.data

    photo = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
    side = min(photo.size) // 2
    left, top = qx * (photo.width - side), qy * (photo.height - side)
    return photo.crop((left, top, left + side, top + side)).resize((2 * side, 2 * side))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    original = _quadrant("chelsea", 0, 0)
    half = original.resize((original.width // 2, original.height // 2))
    images = [
        encode(original, quality=92),  # 0 the original
        encode(half, "PNG"),  # 1 resized copy
        encode(Image.open(io.BytesIO(encode(original, quality=92))), quality=75),  # 2 re-encoded
        encode(_quadrant("chelsea", 1, 1), quality=92),  # 3 another part of the same photo
        encode(_quadrant("coffee", 0, 1), quality=92),  # 4 another photo
        encode(_quadrant("astronaut", 1, 0), quality=92),  # 5 another photo
    ]
    cache = FeatureCache(tmp_path_factory.mktemp("features"))
    return embed_images([ref_for(data) for data in images], backbone="lite0", cache=cache)


def test_resized_and_reencoded_copies_form_one_group(embedded: np.ndarray) -> None:
    groups = near_duplicate_groups(embedded)
    assert [g.members for g in groups] == [(0, 1, 2)]
    assert groups[0].similarity >= 0.96


def test_a_different_photo_of_the_same_kind_is_not_a_duplicate(embedded: np.ndarray) -> None:
    pairs, _ = near_duplicate_pairs(embedded)
    flagged = {int(i) for i in pairs.reshape(-1)}
    assert flagged.isdisjoint({3, 4, 5})


def test_projection_search_matches_exact_all_pairs() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, 64)).astype(np.float32)
    copies = base[:40] + 0.05 * rng.standard_normal((40, 64)).astype(np.float32)
    x = np.concatenate([base, copies])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    expected = {(i, j) for i, j in zip(*np.nonzero(np.triu(sims >= 0.96, k=1)), strict=True)}
    pairs, found_sims = near_duplicate_pairs(x, threshold=0.96)
    assert {(int(i), int(j)) for i, j in pairs} == expected
    assert len(expected) >= 40
    assert (found_sims >= 0.96).all()


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="must be \\(N, D\\)"):
        near_duplicate_groups(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        near_duplicate_groups(np.full((2, 3), np.nan))
    assert near_duplicate_groups(np.zeros((1, 4))) == []


def test_copies_are_judged_on_the_last_maps_part_of_a_levels_embedding() -> None:
    """A -levels embedding (blocks 4-6 pooled, then the last map's 1,280 values): pairs follow
    the last map's part, whatever the texture part before it says."""
    rng = np.random.default_rng(4)
    texture = rng.standard_normal((1, 624)).repeat(4, axis=0) * 10  # alike everywhere, and large
    content = rng.standard_normal((4, 1280))
    content[1] = content[0] + rng.standard_normal(1280) * 0.05  # a copy of image 0
    vectors = np.concatenate([texture, content], axis=1)
    vectors[1, :624] = rng.standard_normal(624) * 10  # its texture part unlike image 0's
    pairs, _ = near_duplicate_pairs(vectors)
    assert pairs.tolist() == [[0, 1]]
