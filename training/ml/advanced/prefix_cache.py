"""The cached recipe: decode once, frozen prefix computed once, feature-space augmentation."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..backbones import get_backbone
from ..data import ImageRef, read_bytes
from ..device import to_device
from ..errors import Cancelled
from ..features import decoded_batches
from ..inference import build_engine
from ..preprocessing import load_rgb, normalize_batch, resize_center_crop
from .model import Classifier, classifier_loss, probabilities
from .recipe import FineTuneRecipe
from .run import Cached, Run
from .split import Data
from .timing import timed


def _prefix_numel(model: Classifier, blocks: int, size: int, device: torch.device) -> int:
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


def frozen_blocks(
    model: Classifier,
    recipe: FineTuneRecipe,
    data: Data,
    backbone: str,
    device: torch.device,
) -> int | None:
    """Blocks to freeze so the cached outputs fit `recipe.cache_limit_mb`; None: none fit.

    The recipe's count first, then deeper ones (leaving at least one block to train): an
    EfficientNet's early blocks output the largest maps (lite0 at 224 px: 200k values after
    block 1, 31k after block 3), so freezing fewer blocks would only grow the cache. Sized at
    the input size (the worst case for the training images) so the decision needs no decoding;
    float16 for training images, float32 for held-out ones. Images are decoded a batch at a
    time (`cache_prefix`), so the outputs are all the cache holds.
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


# Below this many images eager PyTorch costs less than exporting the prefix for an engine (1.7 s
# for lite0, the eager prefix of about 60 images at 224 px).
ENGINE_MIN_IMAGES = 64


class _PrefixNet(nn.Module):
    """The classifier's frozen prefix as a module of its own, for an inference engine."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.prefix(x)


PrefixFn = Callable[[np.ndarray], torch.Tensor]


def _prefix_function(run: Run, side: int, images: int) -> PrefixFn:
    """uint8 (N, side, side, 3) pixels -> the frozen prefix's float32 output on the CPU.

    Through an inference engine on the CPU (ONNX Runtime when installed, exported once for
    `side`) when there are ENGINE_MIN_IMAGES `images` or more: lite0's stem and first blocks
    took 11 ms an image there against 73 ms in eager PyTorch (224 px, one thread, outputs equal
    within 1e-5 of their range), and this pass was most of the cached recipe's fixed cost
    (bench/RESULTS.md, issue 15). Otherwise eager PyTorch on the run's device.
    """
    spec = get_backbone(run.backbone)
    run.model.eval()
    if run.device.type == "cpu" and images >= ENGINE_MIN_IMAGES:
        engine = build_engine(_PrefixNet(run.model), spec, device="cpu", input_size=side)
        return lambda batch: torch.from_numpy(engine(batch))

    def eager(batch: np.ndarray) -> torch.Tensor:
        normalized = to_device(normalize_batch(torch.from_numpy(batch), spec), run.device)
        with torch.inference_mode():
            return run.model.prefix(normalized).to("cpu")

    return eager


def _run_prefix(
    run: Run, prefix: PrefixFn, pixels: Iterator[np.ndarray], count: int, dtype: torch.dtype
) -> torch.Tensor:
    """The frozen prefix's output for batches of uint8 pixels, stacked on the CPU."""
    outputs: list[torch.Tensor] = []
    for batch in pixels:
        if run.should_stop():
            raise Cancelled("Training was cancelled.")
        outputs.append(prefix(batch).to(dtype))
    if not outputs:
        return torch.zeros(count, 0)
    return torch.cat(outputs)


def cache_prefix(run: Run) -> Cached:
    """Decode every image once; the frozen prefix's output for training and held-out images."""
    spec = get_backbone(run.backbone)
    refs, holdout_refs = run.data.train_refs, run.data.holdout_refs
    size = _train_side(refs, spec.input_size, run.recipe.own_resolution)
    images = len(refs) + len(holdout_refs)
    # One engine per side: the held-out images use the training one unless it trains smaller.
    prefix = {side: _prefix_function(run, side, images) for side in {size, spec.input_size}}
    chunks = _decoded_chunks(refs, spec.input_size, size, run.should_stop)
    train = _run_prefix(run, prefix[size], chunks, len(refs), torch.float16)
    # Held-out images go through the serving path (input size, float32), so the kept
    # checkpoint's scores are the ones the Predictor will produce.
    holdout_pixels = (
        batch for _, batch in decoded_batches(holdout_refs, size=spec.input_size, batch_size=32)
    )
    holdout = _run_prefix(
        run, prefix[spec.input_size], holdout_pixels, len(holdout_refs), torch.float32
    )
    return Cached(train=train, holdout=holdout, size=size)


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


def cached_batches(
    run: Run, order: np.ndarray, generator: torch.Generator
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Augmented float32 batches of the cached prefix outputs, in `order`."""
    assert run.cached is not None
    for start in range(0, len(order), run.batch_size):
        chunk = order[start : start + run.batch_size]
        with timed(run, "augmentation"):
            batch = _augment(run.cached.train[torch.from_numpy(chunk)].float(), generator)
        yield chunk, batch


def evaluate_cached(run: Run) -> tuple[float, np.ndarray]:
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
    loss = float(classifier_loss(all_logits, run.data.y_holdout, run.multilabel))
    return loss, probabilities(all_logits, run.multilabel).numpy().astype(np.float32)
