"""Advanced training of one iteration: fine-tune the backbone inside the iteration's budget."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from django.conf import settings

from training.ml.advanced import fine_tune
from training.ml.artifact import ClassifierArtifact
from training.ml.data import ImageRef
from training.ml.features import FeatureCache
from training.ml.preprocessing import PREPROCESSING_VERSION
from training.models import Iteration
from training.services.finish import Outcome
from training.services.progress import ProgressReporter


def train_advanced(
    iteration: Iteration,
    refs: list[ImageRef],
    targets: np.ndarray,
    tag_names: list[str],
    report: ProgressReporter,
) -> Outcome:
    """Fine-tune; the scores kept for the performance page are those of the held-out images."""
    t0 = time.monotonic()
    result = fine_tune(
        refs,
        targets,
        multilabel=iteration.is_multilabel,
        backbone=iteration.backbone,
        budget_s=float(iteration.budget_s),
        seed=0,
        # The linear-probe start reuses (and fills) the same embeddings quick training caches.
        cache=FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR),
        on_progress=lambda phase, fraction: report(phase, 0.95 * fraction),
        should_stop=lambda: False,
        device=settings.LOUPE_DEVICE,
    )
    head_weight, head_bias, backbone_state = split_state(result.state)
    artifact = ClassifierArtifact(
        backbone=iteration.backbone,
        multilabel=iteration.is_multilabel,
        tag_keys=tag_names,
        head_weight=head_weight,
        head_bias=head_bias,
        backbone_state=backbone_state,
        preprocessing_version=PREPROCESSING_VERSION,
        threshold=0.5,
    )
    index = np.asarray(result.holdout_index, dtype=np.int64)
    return Outcome(
        artifact=artifact,
        scored_index=index,
        scores=np.asarray(result.holdout_scores, dtype=np.float64),
        folds=np.full(len(index), -1),
        timings={"training_s": time.monotonic() - t0},
        extra={
            "epochs": int(result.epochs),
            "best_epoch": int(result.best_epoch),
            # Held-out loss per epoch, index 0 = the linear-probe start (the page's curve).
            "holdout_losses": [round(float(loss), 5) for loss in result.holdout_losses],
        },
    )


def split_state(state: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(head weight, head bias, backbone state dict) from fine_tune's combined state.

    FineTuneResult.state holds "backbone.*" and "head.weight"/"head.bias" of the best epoch.
    """
    head_weight = state["head.weight"]
    head_bias = state["head.bias"]
    backbone = {
        key.removeprefix("backbone."): value
        for key, value in state.items()
        if key.startswith("backbone.")
    }
    return head_weight, head_bias, backbone
