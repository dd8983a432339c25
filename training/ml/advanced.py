"""Advanced training: fine-tune the whole backbone with augmentation inside a time budget.

Recipe (LP-FT): first fit the quick linear head on frozen features and use it to initialise the
classifier, so fine-tuning starts from quick-training quality instead of a random head that
would wreck the pretrained features in the first steps; then train backbone + head with AdamW,
RandomResizedCrop / flip / TrivialAugmentWide, a cosine learning rate over the budget, and
BatchNorm statistics frozen (CPU batches are small). After every epoch the held-out split is
scored; the best checkpoint (lowest held-out loss, the linear-probe start counting as epoch 0)
is kept in memory, and training stops early after `patience` epochs without improvement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .artifact import ClassifierArtifact
from .backbones import build_feature_extractor, get_backbone
from .data import ImageRef, read_bytes
from .device import Precision, precision_for, resolve_device, to_device
from .errors import BudgetExhausted, Cancelled, TrainingDiverged
from .features import FeatureCache, decoded_batches, embed_images
from .preprocessing import PREPROCESSING_VERSION, load_rgb, normalize_batch, train_transform
from .quick import _validate, fit_head, fold_count, stratified_folds
from .seeding import seed_everything

ProgressFn = Callable[[str, float], None]


def _ignore_progress(phase: str, fraction: float) -> None:
    return None


def _never_stop() -> bool:
    return False


@dataclass(frozen=True)
class FineTuneResult:
    state: dict[str, torch.Tensor]  # "backbone.*" and "head.weight"/"head.bias" of the best epoch
    holdout_index: np.ndarray  # (M,) indices into refs of the held-out images
    holdout_scores: np.ndarray  # (M, T) float32 probabilities of the best checkpoint
    epochs: int  # fine-tuning epochs completed
    best_epoch: int  # 0 = the linear-probe start was never beaten
    holdout_losses: tuple[float, ...] = ()  # per epoch, index 0 = the linear-probe start

    def to_artifact(
        self,
        *,
        backbone: str,
        multilabel: bool,
        tag_keys: Sequence[str],
        threshold: float = 0.5,
    ) -> ClassifierArtifact:
        """The fine-tuned model as a ClassifierArtifact for save_artifact / Predictor."""
        prefix = "backbone."
        backbone_state = {
            name[len(prefix) :]: tensor
            for name, tensor in self.state.items()
            if name.startswith(prefix)
        }
        return ClassifierArtifact(
            backbone=backbone,
            multilabel=multilabel,
            tag_keys=list(tag_keys),
            head_weight=self.state["head.weight"],
            head_bias=self.state["head.bias"],
            backbone_state=backbone_state,
            preprocessing_version=PREPROCESSING_VERSION,
            threshold=threshold,
        )


class _Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # type: ignore[no-any-return]

    def train_with_frozen_norm(self) -> None:
        self.train()
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets)
    labels = torch.where(
        targets.sum(dim=1) > 0,
        targets.argmax(dim=1),
        torch.full_like(targets[:, 0], targets.shape[1]).long(),
    )
    return F.cross_entropy(logits, labels)


def _probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)[:, :-1]


def _augmented(ref: ImageRef, size: int, transform: Callable[..., torch.Tensor]) -> torch.Tensor:
    data = read_bytes(ref)
    # Decode JPEGs at reduced scale but leave room for the random crop to zoom in.
    return transform(load_rgb(data, key=ref.key, draft_size=size * 2))


def _train_batches(
    refs: Sequence[ImageRef],
    order: np.ndarray,
    batch_size: int,
    size: int,
    transform: Callable[..., torch.Tensor],
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Augmented batches in `order`, decoded by a thread pool one batch ahead of the caller."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="augment") as pool:
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

        def submit(chunk: np.ndarray) -> list[Future[torch.Tensor]]:
            return [pool.submit(_augmented, refs[i], size, transform) for i in chunk]

        pending = submit(chunks[0]) if chunks else []
        try:
            for position, chunk in enumerate(chunks):
                current = pending
                pending = submit(chunks[position + 1]) if position + 1 < len(chunks) else []
                yield chunk, torch.stack([future.result() for future in current])
        finally:
            for future in pending:
                future.cancel()


def _evaluate(run: _Run) -> tuple[float, np.ndarray]:
    """(held-out loss, (M, T) probabilities) of the model as it is now."""
    spec = get_backbone(run.backbone)
    run.model.eval()
    logits: list[torch.Tensor] = []
    with torch.inference_mode(), run.precision.autocast():
        for _, pixels in decoded_batches(
            run.data.holdout_refs, size=spec.input_size, batch_size=32
        ):
            batch = to_device(normalize_batch(torch.from_numpy(pixels), spec), run.device)
            logits.append(run.model(batch).float().cpu())
    all_logits = torch.cat(logits)
    loss = float(_loss(all_logits, run.data.y_holdout, run.multilabel))
    return loss, _probabilities(all_logits, run.multilabel).numpy().astype(np.float32)


def _split(targets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    k = fold_count(targets, 5)
    folds = stratified_folds(targets, k, seed)
    return np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)


def fine_tune(
    refs: Sequence[ImageRef],
    targets: np.ndarray,
    *,
    multilabel: bool,
    backbone: str,
    budget_s: float,
    seed: int = 0,
    on_progress: ProgressFn = _ignore_progress,
    should_stop: Callable[[], bool] = _never_stop,
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    max_epochs: int = 30,
    patience: int = 4,
    lr: float = 3e-4,
    device: str = "auto",
) -> FineTuneResult:
    """Fine-tune `backbone` on `refs` within `budget_s` seconds of wall-clock time.

    Holds out a stratified ~1/5 (1/k when the smallest tag has fewer than 5 images) for early
    stopping and returns its scores. `cache` (optional) lets the linear-probe start reuse cached
    frozen embeddings. `device` ("auto", "cpu", "cuda"): on CUDA the steps run under mixed
    precision (device.py). Raises BudgetExhausted if not one epoch fits in the budget,
    TrainingDiverged on a non-finite loss, DatasetCorrupt, DatasetTooSmall, Cancelled,
    DeviceUnavailable.
    """
    targets = np.asarray(targets)
    if len(refs) != targets.shape[0]:
        raise ValueError(f"refs has {len(refs)} images but targets has {targets.shape[0]} rows.")
    _validate(np.zeros((len(refs), 1), dtype=np.float32), targets, multilabel)
    if budget_s <= 0:
        raise BudgetExhausted("The time budget must be positive to train at all.")
    target = resolve_device(device)
    clock = _Clock(time.monotonic(), budget_s)
    seed_everything(seed)
    data = _Data.split(refs, targets, seed)
    on_progress("embedding", 0.0)
    model, best = _linear_probe_start(
        target,
        refs,
        targets,
        data,
        backbone=backbone,
        multilabel=multilabel,
        cache=cache,
        should_stop=should_stop,
    )
    if clock.elapsed() > budget_s:
        raise BudgetExhausted(
            f"The budget of {budget_s:g} s ran out before the first training epoch could start; "
            "choose a larger budget.",
            spent_s={"linear-probe start": clock.elapsed()},
        )
    model.to(target)
    run = _Run(
        model=model,
        data=data,
        backbone=backbone,
        multilabel=multilabel,
        clock=clock,
        optimizer=_optimizer(model, lr),
        batch_size=batch_size,
        max_epochs=max_epochs,
        on_progress=on_progress,
        should_stop=should_stop,
        precision=precision_for(target),
    )
    epochs_done = _train_epochs(run, best, seed=seed, patience=patience)
    on_progress("done", 1.0)
    return FineTuneResult(
        best.state,
        data.holdout_index,
        best.scores,
        epochs_done,
        best.epoch,
        tuple(best.history),
    )


@dataclass(frozen=True)
class _Clock:
    started: float
    budget_s: float

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class _Data:
    """The stratified train / held-out split of the refs and their targets."""

    train_index: np.ndarray
    holdout_index: np.ndarray
    train_refs: list[ImageRef]
    holdout_refs: list[ImageRef]
    y_train: torch.Tensor
    y_holdout: torch.Tensor

    @classmethod
    def split(cls, refs: Sequence[ImageRef], targets: np.ndarray, seed: int) -> _Data:
        train_index, holdout_index = _split(targets, seed)
        return cls(
            train_index=train_index,
            holdout_index=holdout_index,
            train_refs=[refs[i] for i in train_index],
            holdout_refs=[refs[i] for i in holdout_index],
            y_train=torch.as_tensor(targets[train_index], dtype=torch.float32),
            y_holdout=torch.as_tensor(targets[holdout_index], dtype=torch.float32),
        )


@dataclass
class _Best:
    """The checkpoint to beat: lowest held-out loss so far (epoch 0 = the linear-probe start)."""

    loss: float
    scores: np.ndarray
    state: dict[str, torch.Tensor]
    epoch: int = 0
    history: list[float] = field(default_factory=list)

    def offer(self, epoch: int, loss: float, scores: np.ndarray, model: nn.Module) -> None:
        self.history.append(loss)
        if loss < self.loss:
            self.loss, self.scores, self.epoch = loss, scores, epoch
            self.state = _state_copy(model)


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


@dataclass
class _Run:
    model: _Classifier
    data: _Data
    backbone: str
    multilabel: bool
    clock: _Clock
    optimizer: torch.optim.Optimizer
    batch_size: int
    max_epochs: int
    on_progress: ProgressFn
    should_stop: Callable[[], bool]
    precision: Precision
    planned_epochs: int = 0  # epochs the budget buys at the measured pace (the cap at first)

    def __post_init__(self) -> None:
        self.planned_epochs = self.planned_epochs or self.max_epochs

    @property
    def device(self) -> torch.device:
        return self.precision.device


def _linear_probe_start(
    device: torch.device,
    refs: Sequence[ImageRef],
    targets: np.ndarray,
    data: _Data,
    *,
    backbone: str,
    multilabel: bool,
    cache: FeatureCache | None,
    should_stop: Callable[[], bool],
) -> tuple[_Classifier, _Best]:
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
    model = _Classifier(build_feature_extractor(backbone), head)
    with torch.no_grad():
        probe_logits = torch.from_numpy(frozen[data.holdout_index]) @ head.weight.T + head.bias
    loss = float(_loss(probe_logits, data.y_holdout, multilabel))
    if not math.isfinite(loss):
        raise TrainingDiverged("The training loss became NaN or infinite.")
    scores = _probabilities(probe_logits, multilabel).numpy().astype(np.float32)
    return model, _Best(loss=loss, scores=scores, state=_state_copy(model), history=[loss])


def _optimizer(model: _Classifier, lr: float) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone.parameters(), "lr": lr},
            {"params": model.head.parameters(), "lr": lr * 10},
        ],
        weight_decay=1e-4,
    )
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def _train_epochs(run: _Run, best: _Best, *, seed: int, patience: int) -> int:
    """Epochs until the budget, the epoch cap or early stopping; returns the epochs completed."""
    transform = train_transform(get_backbone(run.backbone))
    rng = np.random.default_rng(seed)
    epochs_done = 0
    epoch_seconds = 0.0
    for epoch in range(1, run.max_epochs + 1):
        if epochs_done and run.clock.elapsed() + epoch_seconds > run.clock.budget_s:
            break  # the next epoch would overrun the budget: keep what we have
        epoch_started = time.monotonic()
        order = rng.permutation(len(run.data.train_refs))
        if not _train_one_epoch(run, epoch, order, transform, run.planned_epochs):
            if epochs_done == 0:
                raise BudgetExhausted(
                    f"The budget of {run.clock.budget_s:g} s ran out before the first training "
                    "epoch finished; choose a larger budget.",
                    spent_s={"the first epoch": run.clock.elapsed()},
                )
            break  # the budget ran out mid-epoch (after at least one full epoch)
        holdout_loss, scores = _evaluate(run)
        if not math.isfinite(holdout_loss):
            raise TrainingDiverged("The held-out loss became NaN or infinite.")
        epochs_done = epoch
        epoch_seconds = time.monotonic() - epoch_started
        # What the budget buys at this pace, shown as "epoch 3/7" rather than the cap.
        left = int((run.clock.budget_s - run.clock.elapsed()) // max(epoch_seconds, 1e-6))
        run.planned_epochs = max(epoch, min(run.max_epochs, epoch + left))
        best.offer(epoch, holdout_loss, scores, run.model)
        if epoch - best.epoch >= patience:
            break
    return epochs_done


def _train_one_epoch(
    run: _Run,
    epoch: int,
    order: np.ndarray,
    transform: Callable[..., torch.Tensor],
    planned: int,
) -> bool:
    """One pass over the training split; False when the budget ran out before its end."""
    model, clock = run.model, run.clock
    model.train_with_frozen_norm()
    size = get_backbone(run.backbone).input_size
    scaler = run.precision.scaler()
    for chunk, batch in _train_batches(run.data.train_refs, order, run.batch_size, size, transform):
        if run.should_stop():
            raise Cancelled("Training was cancelled.")
        elapsed = clock.elapsed()
        if elapsed > clock.budget_s:
            return False
        # Cosine decay over whichever runs out first: the time budget or the epoch cap.
        progress = min(1.0, max(elapsed / clock.budget_s, (epoch - 1) / run.max_epochs))
        for group in run.optimizer.param_groups:
            group["lr"] = group["base_lr"] * 0.5 * (1.0 + math.cos(math.pi * progress))
        targets = to_device(run.data.y_train[torch.from_numpy(chunk)], run.device)
        with run.precision.autocast():
            logits = model(to_device(batch, run.device))
        loss = _loss(logits.float(), targets, run.multilabel)
        if not torch.isfinite(loss):
            raise TrainingDiverged("The training loss became NaN or infinite.")
        run.optimizer.zero_grad()
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.step(run.optimizer)
        scaler.update()
        run.on_progress(
            f"epoch {epoch}/{planned}", min(1.0, max(elapsed / clock.budget_s, progress))
        )
    return True


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
