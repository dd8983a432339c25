"""The streaming recipe (FineTuneRecipe.legacy(), or when the cache would not fit): every image
decoded and augmented in PIL again each epoch, and the held-out images decoded for every score."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..backbones import get_backbone
from ..data import ImageRef, read_bytes
from ..device import to_device
from ..features import decoded_batches
from ..preprocessing import load_rgb, normalize_batch
from .model import classifier_loss, probabilities
from .run import Run
from .timing import add


def _augmented(ref: ImageRef, size: int, transform: Callable[..., torch.Tensor]) -> torch.Tensor:
    data = read_bytes(ref)
    # Decode JPEGs at reduced scale but leave room for the random crop to zoom in.
    return transform(load_rgb(data, key=ref.key, draft_size=size * 2))


def train_batches(
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


def timed_batches(
    run: Run, batches: Iterator[tuple[np.ndarray, torch.Tensor]]
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The legacy loader's batches, charging the time the model waited for them."""
    while True:
        started = time.monotonic()
        item = next(batches, None)
        add(run, "waiting for decoding and augmentation", time.monotonic() - started)
        if item is None:
            return
        yield item


def evaluate(run: Run) -> tuple[float, np.ndarray]:
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
    loss = float(classifier_loss(all_logits, run.data.y_holdout, run.multilabel))
    return loss, probabilities(all_logits, run.multilabel).numpy().astype(np.float32)
