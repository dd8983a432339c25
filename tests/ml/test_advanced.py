"""Fine-tuning: a few real steps on tiny data, best checkpoint kept, budget enforced."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.ml.conftest import photo_dataset
from training.ml.advanced import fine_tune
from training.ml.artifact import Predictor, load_artifact, save_artifact
from training.ml.errors import BudgetExhausted
from training.ml.features import FeatureCache
from training.ml.preprocessing import load_rgb


def test_fine_tune_runs_and_keeps_the_best_checkpoint(
    tiny_backbone: str, cache: FeatureCache
) -> None:
    refs, targets = photo_dataset(per_class=5)
    phases: list[str] = []
    result = fine_tune(
        refs,
        targets,
        multilabel=False,
        backbone=tiny_backbone,
        budget_s=600,
        seed=0,
        cache=cache,
        batch_size=8,
        max_epochs=2,
        patience=5,
        on_progress=lambda phase, fraction: phases.append(phase),
    )
    assert result.epochs == 2 and 0 <= result.best_epoch <= 2
    assert any(phase.startswith("epoch 1/2") for phase in phases)
    held_out = result.holdout_index
    assert len(held_out) == 3 and len(set(targets[held_out].argmax(axis=1))) == 3  # stratified
    assert result.holdout_scores.shape == (3, 3)
    assert set(result.state) >= {"head.weight", "head.bias"}
    assert len(result.holdout_losses) == 3  # the linear-probe start + 2 epochs
    assert result.best_epoch == int(np.argmin(result.holdout_losses))

    # The kept state is the best epoch's: rebuilding it reproduces the held-out scores.
    artifact = result.to_artifact(
        backbone=tiny_backbone, multilabel=False, tag_keys=["cat", "coffee", "rocket"]
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    buffer.seek(0)
    predictor = Predictor(load_artifact(buffer))
    images = [load_rgb(refs[i].open().read()) for i in held_out]
    np.testing.assert_allclose(predictor.predict(images), result.holdout_scores, atol=1e-4)
    assert predictor.artifact.backbone_state is not None


def test_tiny_budget_raises_budget_exhausted(tiny_backbone: str, cache: FeatureCache) -> None:
    refs, targets = photo_dataset(per_class=4)
    with pytest.raises(BudgetExhausted, match="budget"):
        fine_tune(
            refs, targets, multilabel=False, backbone=tiny_backbone, budget_s=0.01, cache=cache
        )
