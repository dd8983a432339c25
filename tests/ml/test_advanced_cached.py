"""The cached fine-tuning recipe (issue 15, item 2): frozen prefix computed once, images decoded
once at their own resolution, feature-space augmentation; it must still learn, score held-out
images exactly as the served model does, stop early and keep the best checkpoint."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.ml.conftest import photo_dataset
from training.ml.advanced import FineTuneRecipe, fine_tune, prefix_cache
from training.ml.advanced.model import Classifier
from training.ml.advanced.prefix_cache import _prefix_numel, frozen_blocks
from training.ml.advanced.split import Data
from training.ml.backbones import build_feature_extractor, get_backbone
from training.ml.features import FeatureCache


def test_frozen_prefix_then_suffix_equals_the_full_network(tiny_backbone: str) -> None:
    torch.manual_seed(0)
    head = nn.Linear(get_backbone(tiny_backbone).feature_dim, 4)
    model = Classifier(build_feature_extractor(tiny_backbone), head).eval()
    pixels = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        full = model(pixels)
        for blocks in (1, 2, 3):
            model.freeze_prefix(blocks)
            cached = model.prefix(pixels)
            assert cached.shape[1] != 3  # really a feature map, not the pixels
            torch.testing.assert_close(model.suffix(cached), full, atol=1e-5, rtol=1e-5)
    frozen = {name for name, p in model.backbone.named_parameters() if not p.requires_grad}
    assert any(name.startswith("conv_stem") for name in frozen)
    assert any(name.startswith("blocks.2.") for name in frozen)
    assert not any(name.startswith("blocks.3.") for name in frozen)
    with pytest.raises(ValueError, match="At most 4"):  # block 4 is pooled into the embedding
        model.freeze_prefix(5)


def test_cached_recipe_learns_and_beats_its_linear_probe_start(
    tiny_backbone: str, cache: FeatureCache
) -> None:
    refs, targets = photo_dataset(per_class=6, size=48)
    result = fine_tune(
        refs,
        targets,
        multilabel=False,
        backbone=tiny_backbone,
        budget_s=600,
        seed=0,
        cache=cache,
        batch_size=8,
        max_epochs=3,
        patience=3,
        recipe=FineTuneRecipe(),
    )
    labels = targets.argmax(axis=1)[result.holdout_index]
    accuracy = float((result.holdout_scores.argmax(axis=1) == labels).mean())
    assert accuracy >= 0.9
    assert result.epochs == 3
    assert min(result.holdout_losses[1:]) < result.holdout_losses[0]  # fine-tuning helped
    assert result.best_epoch == int(np.argmin(result.holdout_losses))
    assert result.spent_s["forward and backward"] > 0 and "held-out scoring" in result.spent_s
    # Trained channels-last, kept in the contiguous layout every loader of the weights expects.
    assert all(tensor.is_contiguous() for tensor in result.state.values())


def test_default_recipe_is_the_cached_one_at_the_serving_size(
    tiny_backbone: str, cache: FeatureCache
) -> None:
    refs, targets = photo_dataset(per_class=4, size=40)  # the tiny backbone's input is 64 px
    common = {
        "multilabel": False,
        "backbone": tiny_backbone,
        "budget_s": 600,
        "cache": cache,
        "batch_size": 8,
        "max_epochs": 1,
    }
    # No recipe given: the cached recipe, at the size the Predictor serves (issue 15).
    default = fine_tune(refs, targets, **common)  # type: ignore[arg-type]
    own = fine_tune(refs, targets, recipe=FineTuneRecipe(own_resolution=True), **common)  # type: ignore[arg-type]
    legacy = fine_tune(refs, targets, recipe=FineTuneRecipe.legacy(), **common)  # type: ignore[arg-type]
    assert default.train_size == 64 and "decoding and caching" in default.spent_s
    assert own.train_size == 40  # opt-in: the images' own resolution
    assert legacy.train_size == 64
    assert "decoding and caching" not in legacy.spent_s


def test_on_the_cpu_the_prefix_is_cached_through_an_inference_engine_as_eager_torch_would(
    tiny_backbone: str, cache: FeatureCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs, targets = photo_dataset(per_class=6, size=48)
    common = {
        "multilabel": False,
        "backbone": tiny_backbone,
        "budget_s": 600,
        "seed": 0,
        "cache": cache,
        "batch_size": 8,
        "max_epochs": 2,
    }
    built: list[int | None] = []
    through_engine: list[int] = []  # images per call
    real = prefix_cache.build_engine

    def spy(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs.get("input_size"))
        engine = real(*args, **kwargs)

        def counted(batch: np.ndarray) -> np.ndarray:
            through_engine.append(len(batch))
            return engine(batch)  # type: ignore[no-any-return]

        return counted

    monkeypatch.setattr(prefix_cache, "build_engine", spy)
    eager = fine_tune(refs, targets, **common)  # type: ignore[arg-type]
    assert built == []  # too few images to be worth an export
    monkeypatch.setattr(prefix_cache, "ENGINE_MIN_IMAGES", 1)
    engine = fine_tune(refs, targets, **common)  # type: ignore[arg-type]
    # One export serves the training images' cache and the held-out images' (same side).
    assert built == [64]
    assert sum(through_engine) == len(refs)
    assert engine.best_epoch == eager.best_epoch
    np.testing.assert_allclose(engine.holdout_scores, eager.holdout_scores, atol=0.02)


def test_early_stopping_keeps_the_best_epoch(tiny_backbone: str, cache: FeatureCache) -> None:
    refs, targets = photo_dataset(per_class=5)
    result = fine_tune(
        refs,
        targets,
        multilabel=False,
        backbone=tiny_backbone,
        budget_s=600,
        seed=0,
        cache=cache,
        batch_size=8,
        max_epochs=40,
        patience=1,
        lr=3e-2,  # large enough that the held-out loss soon stops improving
        recipe=FineTuneRecipe(),
    )
    assert result.epochs < 40
    assert result.epochs == result.best_epoch + 1  # stopped one epoch without improvement
    assert result.best_epoch == int(np.argmin(result.holdout_losses))
    assert len(result.holdout_losses) == result.epochs + 1


def _cache_mb(model: Classifier, blocks: int, data: Data, size: int) -> float:
    values = _prefix_numel(model, blocks, size, torch.device("cpu"))
    return values * (2 * len(data.train_refs) + 4 * len(data.holdout_refs)) / 2**20


def test_a_cache_over_the_limit_freezes_deeper_never_shallower(tiny_backbone: str) -> None:
    refs, targets = photo_dataset(per_class=4, size=40)
    data = Data.split(refs, targets, 0)
    head = nn.Linear(get_backbone(tiny_backbone).feature_dim, 4)
    model = Classifier(build_feature_extractor(tiny_backbone), head)
    size = get_backbone(tiny_backbone).input_size
    recipe = FineTuneRecipe(frozen_blocks=1)
    at_recipe = _cache_mb(model, 1, data, size)
    cpu = torch.device("cpu")
    assert (
        frozen_blocks(model, replace(recipe, cache_limit_mb=at_recipe), data, tiny_backbone, cpu)
        == 1
    )
    # Just under what the recipe's blocks need: a deeper block with a smaller output, whose cache
    # fits (fewer blocks would need more: the pixels or the stem's wide maps).
    tighter = replace(recipe, cache_limit_mb=at_recipe * 0.99)
    deeper = frozen_blocks(model, tighter, data, tiny_backbone, cpu)
    assert deeper is not None and deeper > 1
    assert _cache_mb(model, deeper, data, size) <= tighter.cache_limit_mb
    assert (
        frozen_blocks(model, replace(recipe, cache_limit_mb=1e-6), data, tiny_backbone, cpu) is None
    )


def test_when_no_cache_fits_fine_tuning_streams_the_images(
    tiny_backbone: str, cache: FeatureCache
) -> None:
    refs, targets = photo_dataset(per_class=4, size=40)
    result = fine_tune(
        refs,
        targets,
        multilabel=False,
        backbone=tiny_backbone,
        budget_s=600,
        cache=cache,
        batch_size=8,
        max_epochs=1,
        recipe=FineTuneRecipe(cache_limit_mb=1e-6),
    )
    assert result.epochs == 1
    assert "decoding and caching" not in result.spent_s  # the streaming path, not a huge cache
