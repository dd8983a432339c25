"""Advanced training: fine-tune the whole backbone with augmentation inside a time budget.

Recipe (LP-FT): first fit the quick linear head on frozen features and use it to initialise the
classifier, so fine-tuning starts from quick-training quality instead of a random head that
would wreck the pretrained features in the first steps; then train backbone + head with AdamW,
RandomResizedCrop / flip / TrivialAugmentWide, a cosine learning rate over the budget, and
BatchNorm statistics frozen (CPU batches are small). After every epoch the held-out split is
scored; the best checkpoint (lowest held-out loss, the linear-probe start counting as epoch 0)
is kept in memory, and training stops early after `patience` epochs without improvement.

Where a CPU epoch's time goes (FineTuneResult.spent_s, printed per phase by bench/fine_tuning.py):
the legacy recipe (FineTuneRecipe.legacy()) decodes and augments every image again each epoch in
PIL (hidden behind the model by a thread pool), runs forward and backward at the input size even
for 128 px images (three times the pixels), including the stem and first blocks, whose large
activations are costly on CPU, and decodes the held-out images again for every score. The
default FineTuneRecipe() decodes every image once into a uint8 cache at the input size,
freezes the stem and the first three blocks and computes their outputs once, augments in that
feature space (random resized crop and flip, which commute with the frozen convolutions up to
border effects; photometric jitter is the price), trains the rest channels-last with fused AdamW,
and scores the held-out split from its cached prefix at the serving resolution, so the checkpoint
is chosen on exactly what the Predictor computes. On the CPU a training step (16 images) cost
about a quarter of the legacy one (bench/RESULTS.md, issue 15). Training at the images' own
resolution (own_resolution=True: 128 px glyphs at 128 px, a third of the pixels) is cheaper
still but is opt-in: the Predictor serves at the input size, and on the glyph set that scale
mismatch cost 30-40 points of held-out accuracy in the first epochs. Threads are the caller's
(the worker runs one, device.torch_threads): two threads on a busy two-core machine made every
step several times slower for both recipes.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .artifact import ClassifierArtifact
from .backbones import build_feature_extractor, get_backbone
from .data import ImageRef, read_bytes
from .device import Precision, precision_for, resolve_device, to_device
from .errors import BudgetExhausted, Cancelled, TrainingDiverged
from .features import FeatureCache, decoded_batches, embed_images
from .preprocessing import (
    PREPROCESSING_VERSION,
    load_rgb,
    normalize_batch,
    resize_center_crop,
    train_transform,
)
from .quick import _validate, fit_head, fold_count, stratified_folds
from .seeding import seed_everything

ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class FineTuneRecipe:
    """How fine_tune spends an epoch; the field defaults are the cached recipe, fine_tune's
    default (see above)."""

    own_resolution: bool = False  # train at the images' size when smaller than the input size
    frozen_blocks: int = 3  # the stem and this many blocks are frozen, their outputs cached
    cached: bool = True  # decode once into a uint8 cache (False: PIL augmentation every epoch)
    channels_last: bool = True  # the suffix step ~25 % faster on CPU (oneDNN's native layout)
    fused_optimizer: bool = True
    cache_limit_mb: float = 1500.0  # fewer frozen blocks when their outputs would not fit

    @classmethod
    def legacy(cls) -> FineTuneRecipe:
        """The recipe before issue 15: full network at the input size, PIL augmentation."""
        return cls(
            own_resolution=False,
            frozen_blocks=0,
            cached=False,
            channels_last=False,
            fused_optimizer=False,
        )


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
    spent_s: Mapping[str, float] = field(default_factory=dict)  # seconds per phase
    train_size: int = 0  # the side the training images were fed at

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
        self.frozen_blocks = 0  # stem + this many blocks run once, outside training (prefix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # type: ignore[no-any-return]

    def splittable_blocks(self) -> int:
        """How many blocks can be frozen as a prefix (0 for a backbone of another shape)."""
        net = self.backbone
        parts = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")
        if not all(hasattr(net, part) for part in parts):
            return 0
        return len(net.blocks)  # type: ignore[arg-type]

    def freeze_prefix(self, blocks: int) -> None:
        """Freeze the stem and the first `blocks` blocks (computed by prefix(), not trained)."""
        self.frozen_blocks = blocks
        if blocks <= 0:
            return
        net = self.backbone
        for module in (net.conv_stem, net.bn1, *net.blocks[:blocks]):  # type: ignore[index]
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels -> the frozen blocks' output (the pixels when nothing is frozen)."""
        if self.frozen_blocks <= 0:
            return x
        net = self.backbone
        x = net.bn1(net.conv_stem(x))  # type: ignore[operator]
        for block in net.blocks[: self.frozen_blocks]:  # type: ignore[index]
            x = block(x)
        return x

    def suffix(self, x: torch.Tensor) -> torch.Tensor:
        """prefix()'s output -> logits; suffix(prefix(x)) == forward(x)."""
        if self.frozen_blocks <= 0:
            return self.forward(x)
        net = self.backbone
        for block in net.blocks[self.frozen_blocks :]:  # type: ignore[index]
            x = block(x)
        x = net.bn2(net.conv_head(x))  # type: ignore[operator]
        return self.head(net.forward_head(x))  # type: ignore[operator,no-any-return]

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
    recipe: FineTuneRecipe | None = None,
) -> FineTuneResult:
    """Fine-tune `backbone` on `refs` within `budget_s` seconds of wall-clock time.

    Holds out a stratified ~1/5 (1/k when the smallest tag has fewer than 5 images) for early
    stopping and returns its scores. `cache` (optional) lets the linear-probe start reuse cached
    frozen embeddings. `device` ("auto", "cpu", "cuda"): on CUDA the steps run under mixed
    precision (device.py). Raises BudgetExhausted if not one epoch fits in the budget,
    TrainingDiverged on a non-finite loss, DatasetCorrupt, DatasetTooSmall, Cancelled,
    DeviceUnavailable. `recipe`: how epochs are run; None = FineTuneRecipe(), the cached recipe
    (FineTuneRecipe.legacy() is kept for comparison, bench/fine_tuning.py).
    """
    recipe = recipe or FineTuneRecipe()
    targets = _checked_targets(refs, targets, multilabel=multilabel, budget_s=budget_s)
    target = resolve_device(device)
    clock = _Clock(time.monotonic(), budget_s)
    seed_everything(seed)
    data = _Data.split(refs, targets, seed)
    on_progress("embedding", 0.0)
    model, best = _linear_probe_start(
        target, refs, targets, data, backbone, multilabel, cache, should_stop
    )
    spent = _spent_on_linear_probe(clock)
    recipe = _place_model(model, recipe, data, backbone, target, on_progress)
    run = _Run(
        model=model,
        data=data,
        backbone=backbone,
        multilabel=multilabel,
        clock=clock,
        optimizer=_optimizer(model, lr, fused=recipe.fused_optimizer),
        batch_size=batch_size,
        max_epochs=max_epochs,
        on_progress=on_progress,
        should_stop=should_stop,
        precision=precision_for(target),
        recipe=recipe,
        spent=spent,
    )
    _cache_training_images(run)
    epochs_done = _train_epochs(run, best, seed=seed, patience=patience)
    on_progress("done", 1.0)
    return _result(run, best, epochs_done)


def _checked_targets(
    refs: Sequence[ImageRef], targets: np.ndarray, *, multilabel: bool, budget_s: float
) -> np.ndarray:
    """`targets` as an (N, T) array, once refs, targets and the budget are known to be usable."""
    targets = np.asarray(targets)
    if len(refs) != targets.shape[0]:
        raise ValueError(f"refs has {len(refs)} images but targets has {targets.shape[0]} rows.")
    _validate(np.zeros((len(refs), 1), dtype=np.float32), targets, multilabel)
    if budget_s <= 0:
        raise BudgetExhausted("The time budget must be positive to train at all.")
    return targets


def _spent_on_linear_probe(clock: _Clock) -> dict[str, float]:
    """Seconds per phase so far; raises BudgetExhausted when the linear probe used the budget."""
    if clock.elapsed() > clock.budget_s:
        raise BudgetExhausted(
            f"The budget of {clock.budget_s:g} s ran out before the first training epoch could "
            "start; choose a larger budget.",
            spent_s={"linear-probe start": clock.elapsed()},
        )
    return {"linear-probe start": clock.elapsed()}


def _place_model(
    model: _Classifier,
    recipe: FineTuneRecipe,
    data: _Data,
    backbone: str,
    device: torch.device,
    on_progress: ProgressFn,
) -> FineTuneRecipe:
    """Move the model to `device`, freeze the recipe's prefix and set its memory layout; returns
    the recipe as it will run (streaming when the cache would not fit)."""
    model.to(device)
    if recipe.cached:
        on_progress("caching images", 0.0)
        blocks = _frozen_blocks(model, recipe, data, backbone, device)
        if blocks is None:  # the cache would not fit: stream the images every epoch instead
            recipe = replace(recipe, cached=False, frozen_blocks=0)
        else:
            model.freeze_prefix(blocks)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    return recipe


def _cache_training_images(run: _Run) -> None:
    """Decode the images and run the frozen prefix once, when the recipe caches."""
    if run.recipe.cached:
        with _timed(run, "decoding and caching"):
            run.cached = _cache_prefix(run)


def _result(run: _Run, best: _Best, epochs_done: int) -> FineTuneResult:
    """The best checkpoint, its held-out scores and where the time went."""
    train_size = run.cached.size if run.cached else get_backbone(run.backbone).input_size
    return FineTuneResult(
        best.state,
        run.data.holdout_index,
        best.scores,
        epochs_done,
        best.epoch,
        tuple(best.history),
        spent_s=dict(run.spent),
        train_size=train_size,
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
    # Contiguous: a channels-last run's weights are saved in the layout every loader expects.
    return {
        name: t.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for name, t in model.state_dict().items()
    }


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
    recipe: FineTuneRecipe = field(default_factory=FineTuneRecipe)
    spent: dict[str, float] = field(default_factory=dict)  # seconds per phase, for the bench
    cached: _Cached | None = None
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


def _optimizer(model: _Classifier, lr: float, *, fused: bool = False) -> torch.optim.Optimizer:
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": trainable, "lr": lr},
            {"params": model.head.parameters(), "lr": lr * 10},
        ],
        weight_decay=1e-4,
        # One fused kernel over all parameters instead of a Python loop over ~150 tensors.
        fused=fused or None,
    )
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def _train_epochs(run: _Run, best: _Best, *, seed: int, patience: int) -> int:
    """Epochs until the budget, the epoch cap or early stopping; returns the epochs completed."""
    transform = train_transform(get_backbone(run.backbone))
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    epochs_done = 0
    epoch_seconds = 0.0
    for epoch in range(1, run.max_epochs + 1):
        if epochs_done and run.clock.elapsed() + epoch_seconds > run.clock.budget_s:
            break  # the next epoch would overrun the budget: keep what we have
        epoch_started = time.monotonic()
        order = rng.permutation(len(run.data.train_refs))
        batches = _epoch_batches(run, order, generator, transform)
        if not _train_one_epoch(run, epoch, batches, run.planned_epochs):
            if epochs_done == 0:
                raise BudgetExhausted(
                    f"The budget of {run.clock.budget_s:g} s ran out before the first training "
                    "epoch finished; choose a larger budget.",
                    spent_s={"the first epoch": run.clock.elapsed()},
                )
            break  # the budget ran out mid-epoch (after at least one full epoch)
        with _timed(run, "held-out scoring"):
            holdout_loss, scores = _evaluate_cached(run) if run.cached else _evaluate(run)
        if not math.isfinite(holdout_loss):
            raise TrainingDiverged("The held-out loss became NaN or infinite.")
        epochs_done = epoch
        epoch_seconds = time.monotonic() - epoch_started
        # What the budget buys at this pace, shown as "epoch 3/7" rather than the cap.
        left = int((run.clock.budget_s - run.clock.elapsed()) // max(epoch_seconds, 1e-6))
        run.planned_epochs = max(epoch, min(run.max_epochs, epoch + left))
        with _timed(run, "checkpointing"):
            best.offer(epoch, holdout_loss, scores, run.model)
        if epoch - best.epoch >= patience:
            break
    return epochs_done


def _epoch_batches(
    run: _Run,
    order: np.ndarray,
    generator: torch.Generator,
    transform: Callable[..., torch.Tensor],
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The training split's augmented batches in `order`: (indices into the split, (B, C, h, w)
    float32), from the cache when there is one, else decoded from the images."""
    if run.cached is not None:
        return _cached_batches(run, order, generator)
    return _timed_batches(
        run,
        _train_batches(
            run.data.train_refs,
            order,
            run.batch_size,
            get_backbone(run.backbone).input_size,
            transform,
        ),
    )


def _train_one_epoch(
    run: _Run,
    epoch: int,
    batches: Iterator[tuple[np.ndarray, torch.Tensor]],
    planned: int,
) -> bool:
    """One pass over the training split; False when the budget ran out before its end."""
    model, clock = run.model, run.clock
    model.train_with_frozen_norm()
    scaler = run.precision.scaler()
    memory = torch.channels_last if run.recipe.channels_last else torch.contiguous_format
    for chunk, batch in batches:
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
        inputs = to_device(batch, run.device).contiguous(memory_format=memory)
        started = time.monotonic()
        with run.precision.autocast():
            logits = model.suffix(inputs)
        loss = _loss(logits.float(), targets, run.multilabel)
        if not torch.isfinite(loss):
            raise TrainingDiverged("The training loss became NaN or infinite.")
        run.optimizer.zero_grad()
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        stepped = time.monotonic()
        scaler.step(run.optimizer)
        scaler.update()
        _add(run, "forward and backward", stepped - started)
        _add(run, "optimizer", time.monotonic() - stepped)
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


# --- The cached recipe: decode once, frozen prefix computed once, feature-space augmentation ---


@dataclass(frozen=True)
class _Cached:
    train: torch.Tensor  # (N, C, h, w) float16: the frozen prefix's output per training image
    holdout: torch.Tensor  # (M, C, H, W) float32: the same at the serving size, held-out images
    size: int  # the side the training images were decoded at


def _add(run: _Run, phase: str, seconds: float) -> None:
    run.spent[phase] = run.spent.get(phase, 0.0) + seconds


@contextmanager
def _timed(run: _Run, phase: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        _add(run, phase, time.monotonic() - started)


def _timed_batches(
    run: _Run, batches: Iterator[tuple[np.ndarray, torch.Tensor]]
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The legacy loader's batches, charging the time the model waited for them."""
    while True:
        started = time.monotonic()
        item = next(batches, None)
        _add(run, "waiting for decoding and augmentation", time.monotonic() - started)
        if item is None:
            return
        yield item


def _prefix_numel(model: _Classifier, blocks: int, size: int, device: torch.device) -> int:
    """Values per image in the output of the stem and `blocks` blocks at `size` px."""
    if blocks <= 0:
        return 3 * size * size
    previous = model.frozen_blocks
    model.frozen_blocks = blocks
    try:
        with torch.inference_mode():
            out = model.prefix(torch.zeros(1, 3, size, size, device=device))
    finally:
        model.frozen_blocks = previous
    return int(out[0].numel())


def _frozen_blocks(
    model: _Classifier,
    recipe: FineTuneRecipe,
    data: _Data,
    backbone: str,
    device: torch.device,
) -> int | None:
    """Blocks to freeze so the cached outputs fit `recipe.cache_limit_mb`; None: none fit.

    The recipe's count first, then deeper ones (leaving at least one block to train): an
    EfficientNet's early blocks output the largest maps (lite0 at 224 px: 200k values after
    block 1, 31k after block 3), so freezing fewer blocks would only grow the cache. Sized at
    the input size (the worst case for the training images) so the decision needs no decoding;
    float16 for training images, float32 for held-out ones. Images are decoded a batch at a
    time (`_cache_prefix`), so the outputs are all the cache holds.
    """
    size = get_backbone(backbone).input_size
    splittable = model.splittable_blocks()
    per_image_bytes = 2 * len(data.train_refs) + 4 * len(data.holdout_refs)
    for blocks in range(min(recipe.frozen_blocks, splittable), max(splittable, 1)):
        if blocks <= 0:
            continue  # nothing frozen: that is the streaming recipe, not a cache of the pixels
        needed_mb = _prefix_numel(model, blocks, size, device) * per_image_bytes / 2**20
        if needed_mb <= recipe.cache_limit_mb:
            return blocks
    return None


def _decode_capped(ref: ImageRef, cap: int) -> np.ndarray:
    """uint8 (s, s, 3): shorter side to min(its own, cap), centre crop (upscales nothing)."""
    image = load_rgb(read_bytes(ref), key=ref.key, draft_size=cap)
    return resize_center_crop(image, min(cap, *image.size))


def _train_side(refs: Sequence[ImageRef], cap: int, own_resolution: bool) -> int:
    """The side the training images are cached at: `cap`, or with `own_resolution` the largest
    shorter side up to `cap` (read from the headers, nothing decoded)."""
    if not own_resolution:
        return cap
    side = 0
    for ref in refs:
        with Image.open(io.BytesIO(read_bytes(ref))) as image:
            side = max(side, min(cap, *image.size))
        if side == cap:
            break
    return side or cap


def _decoded_chunks(
    refs: Sequence[ImageRef],
    cap: int,
    side: int,
    should_stop: Callable[[], bool],
    chunk: int = 32,
) -> Iterator[np.ndarray]:
    """uint8 (<=chunk, side, side, 3) batches of the images, decoded two at a time.

    A batch at a time, so memory holds one batch of pixels, never the whole set. Images smaller
    than `side` (a mixed set at its own resolution) are brought up to it; the network then sees
    each image at most at the resolution it has instead of 224 px interpolated from 128 px.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
        for start in range(0, len(refs), chunk):
            part = refs[start : start + chunk]
            arrays = list(pool.map(_decode_capped, part, [cap] * len(part)))
            if should_stop():
                raise Cancelled("Training was cancelled.")
            pixels = np.empty((len(arrays), side, side, 3), dtype=np.uint8)
            for row, array in enumerate(arrays):
                if array.shape[0] != side:
                    array = resize_center_crop(Image.fromarray(array), side)
                pixels[row] = array
            yield pixels


def _run_prefix(
    run: _Run, pixels: Iterator[np.ndarray], count: int, dtype: torch.dtype
) -> torch.Tensor:
    """The frozen prefix's output for batches of uint8 pixels, stacked on the CPU."""
    spec = get_backbone(run.backbone)
    outputs: list[torch.Tensor] = []
    run.model.eval()
    with torch.inference_mode():
        for batch in pixels:
            if run.should_stop():
                raise Cancelled("Training was cancelled.")
            normalized = to_device(normalize_batch(torch.from_numpy(batch), spec), run.device)
            outputs.append(run.model.prefix(normalized).to("cpu", dtype))
    if not outputs:
        return torch.zeros(count, 0)
    return torch.cat(outputs)


def _cache_prefix(run: _Run) -> _Cached:
    """Decode every image once; the frozen prefix's output for training and held-out images."""
    spec = get_backbone(run.backbone)
    refs = run.data.train_refs
    size = _train_side(refs, spec.input_size, run.recipe.own_resolution)
    chunks = _decoded_chunks(refs, spec.input_size, size, run.should_stop)
    train = _run_prefix(run, chunks, len(refs), torch.float16)
    # Held-out images go through the serving path (input size, float32), so the kept
    # checkpoint's scores are the ones the Predictor will produce.
    holdout_pixels = (
        batch
        for _, batch in decoded_batches(run.data.holdout_refs, size=spec.input_size, batch_size=32)
    )
    holdout = _run_prefix(run, holdout_pixels, len(run.data.holdout_refs), torch.float32)
    return _Cached(train=train, holdout=holdout, size=size)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 25-100%, aspect 3/4-4/3) and horizontal flip of (B,C,h,w).

    Applied to the frozen prefix's output rather than the pixels: the frozen convolutions are
    (up to border effects and their stride) equivariant to crops and scalings, so cropping
    their output stands in for recomputing them on a cropped image, at no cost.
    """
    _, _, height, width = batch.shape
    out = torch.empty_like(batch)
    draws = torch.rand(len(batch), 5, generator=generator).tolist()
    for row, (area_draw, ratio_draw, x_draw, y_draw, flip_draw) in enumerate(draws):
        area = (0.25 + 0.75 * area_draw) * height * width
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * ratio_draw)
        crop_w = max(1, min(width, round(math.sqrt(area * ratio))))
        crop_h = max(1, min(height, round(math.sqrt(area / ratio))))
        left = int(x_draw * (width - crop_w + 1))
        top = int(y_draw * (height - crop_h + 1))
        crop = batch[row : row + 1, :, top : top + crop_h, left : left + crop_w]
        if (crop_h, crop_w) != (height, width):
            crop = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)
        out[row] = crop[0].flip(-1) if flip_draw < 0.5 else crop[0]
    return out


def _cached_batches(
    run: _Run, order: np.ndarray, generator: torch.Generator
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Augmented float32 batches of the cached prefix outputs, in `order`."""
    assert run.cached is not None
    for start in range(0, len(order), run.batch_size):
        chunk = order[start : start + run.batch_size]
        with _timed(run, "augmentation"):
            batch = _augment(run.cached.train[torch.from_numpy(chunk)].float(), generator)
        yield chunk, batch


def _evaluate_cached(run: _Run) -> tuple[float, np.ndarray]:
    """(held-out loss, (M, T) probabilities) from the held-out images' cached prefix."""
    assert run.cached is not None
    run.model.eval()
    logits: list[torch.Tensor] = []
    with torch.inference_mode(), run.precision.autocast():
        for start in range(0, len(run.cached.holdout), 32):
            batch = to_device(run.cached.holdout[start : start + 32], run.device)
            if run.recipe.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            logits.append(run.model.suffix(batch).float().cpu())
    all_logits = torch.cat(logits)
    loss = float(_loss(all_logits, run.data.y_holdout, run.multilabel))
    return loss, _probabilities(all_logits, run.multilabel).numpy().astype(np.float32)
