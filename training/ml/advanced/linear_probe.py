"""The LP-FT start: the quick linear head on frozen features initialises the classifier."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..backbones import build_feature_extractor, get_backbone
from ..data import ImageRef
from ..errors import TrainingDiverged
from ..features import FeatureCache, embed_images
from ..quick import fit_head
from .checkpoint import Best, state_copy
from .model import Classifier, classifier_loss, probabilities
from .split import Data


class _MemoryCache(FeatureCache):
    """A FeatureCache that keeps vectors in a dict, for callers that pass no cache."""

    def __init__(self) -> None:
        super().__init__(".")
        self._store: dict[tuple[str, str], np.ndarray] = {}

    def get_many(self, keys: Sequence[str], backbone: str) -> dict[str, np.ndarray]:
        return {key: self._store[(backbone, key)] for key in keys if (backbone, key) in self._store}

    def put_many(self, vectors: Mapping[str, np.ndarray], backbone: str) -> None:
        for key, vector in vectors.items():
            self._store[(backbone, key)] = np.asarray(vector, dtype=np.float32)


def linear_probe_start(
    device: torch.device,
    refs: Sequence[ImageRef],
    targets: np.ndarray,
    data: Data,
    backbone: str,
    multilabel: bool,
    cache: FeatureCache | None,
    should_stop: Callable[[], bool],
) -> tuple[Classifier, Best]:
    """The model with the quick linear head on frozen features, and that start as the best."""
    spec = get_backbone(backbone)
    store = cache if cache is not None else _MemoryCache()
    frozen = embed_images(
        list(refs), backbone=backbone, cache=store, should_stop=should_stop, device=device.type
    )
    head_fit, _, _ = fit_head(
        frozen[data.train_index],
        targets[data.train_index],
        multilabel=multilabel,
        should_stop=should_stop,
    )
    head = nn.Linear(spec.feature_dim, head_fit.weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(head_fit.weight)
        head.bias.copy_(head_fit.bias)
    model = Classifier(build_feature_extractor(backbone), head)
    with torch.no_grad():
        probe_logits = torch.from_numpy(frozen[data.holdout_index]) @ head.weight.T + head.bias
    loss = float(classifier_loss(probe_logits, data.y_holdout, multilabel))
    if not math.isfinite(loss):
        raise TrainingDiverged("The training loss became NaN or infinite.")
    scores = probabilities(probe_logits, multilabel).numpy().astype(np.float32)
    return model, Best(loss=loss, scores=scores, state=state_copy(model), history=[loss])
