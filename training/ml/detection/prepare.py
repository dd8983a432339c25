"""Preparing a detection training set inside its budget: decode once, cache backbone maps.

On a 2-core CPU the frozen backbone's forward pass is ~75% of preparing an image (bench:
314 ms of 408 ms per 800x600 photograph under load), and a project of 400 photographs could spend
its whole 10-minute budget here and train nothing. So:

- every image is decoded once, at the training resolution (JPEG draft scaling, then shrunk to the
  detector's inference size); the decoded pixels stay in memory (bounded) for augmented views;
- the plain view (view 0) of each image is deterministic, so its maps are kept on disk
  (`MapStore`, bounded) keyed by the image's content hash, the backbone and the detector's input
  size: a retried attempt, or the next iteration of the project, loads them instead of
  recomputing them (preparation is resumable);
- the backbone pass runs in ONNX Runtime when it is installed and the device is the CPU (2.5x
  faster than eager PyTorch on this machine for lite0 at 320x427, outputs equal within 1e-4);
- preparation has a deadline: what is ready when it passes is what training starts on; augmented
  views are only added while they fit in their share of the budget.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from ..data import ImageRef, read_bytes
from ..errors import Cancelled
from ..inference import onnxruntime_available
from ..preprocessing import load_rgb
from .augment import NormalizedBox, TrainAugment, to_pixel_boxes
from .cached import MAX_CACHE_BYTES, CachedView, cache_view
from .evaluate import inference_size
from .model import Detector, DetectorConfig

# Decoded training images kept in memory for augmented views (a 320x427 image is 410 KB).
MAX_DECODED_BYTES = 1024**3
MAP_STORE_FORMAT = 1
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

BodyFn = Callable[[torch.Tensor], list[torch.Tensor]]


@dataclass(frozen=True)
class DecodedImage:
    """A training image at the training resolution: uint8 (3, h, w), its boxes and labels."""

    pixels: torch.Tensor
    boxes: tv_tensors.BoundingBoxes
    labels: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()

    def parts(self) -> tuple[torch.Tensor, tv_tensors.BoundingBoxes, torch.Tensor]:
        return self.pixels, self.boxes, self.labels


def decode_for_training(
    ref: ImageRef, boxes: Sequence[NormalizedBox], config: DetectorConfig
) -> DecodedImage:
    """Decode `ref` once, no larger than the detector's largest training scale."""
    image = load_rgb(read_bytes(ref), key=ref.key, draft_size=config.image_size_px)
    size = inference_size(*image.size, config)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    width, height = image.size
    xyxy, labels = to_pixel_boxes(boxes, width, height)
    return DecodedImage(
        TF.pil_to_tensor(image),
        tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(height, width)),
        labels,
    )


class MapStore:
    """Plain-view backbone maps on disk: `root/<backbone>-<input signature>/<key[:2]>/<key>.pt`.

    Files are written to a temporary name and `os.replace`d (a killed worker leaves no half
    file). Once `max_bytes` are stored, new maps are not written (the store never grows past its
    bound; delete the folder to start over).
    """

    def __init__(
        self, root: Path | str, *, backbone: str, config: DetectorConfig, max_bytes: int
    ) -> None:
        signature = f"{MAP_STORE_FORMAT}:{config.image_size_px}:{config.max_size_px}"
        digest = hashlib.sha256(signature.encode()).hexdigest()[:12]
        self.dir = Path(root) / f"{backbone}-{digest}"
        self.max_bytes = max_bytes
        self._used: int | None = None

    def _path(self, key: str) -> Path:
        if not _KEY_PATTERN.match(key):
            raise ValueError(f"Map store key {key!r} must be a hex digest or similar token.")
        return self.dir / key[:2] / f"{key}.pt"

    def used_bytes(self) -> int:
        if self._used is None:
            self._used = sum(
                path.stat().st_size for path in self.dir.glob("*/*.pt") if path.is_file()
            )
        return self._used

    def get(self, key: str) -> tuple[tuple[torch.Tensor, ...], tuple[int, int]] | None:
        """(float16 maps, (height, width) of the resized image), or None when absent/damaged."""
        try:
            payload = torch.load(self._path(key), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None
        except (OSError, RuntimeError, EOFError, ValueError):  # damaged: recompute it
            return None
        if not isinstance(payload, dict) or payload.get("format") != MAP_STORE_FORMAT:
            return None
        return tuple(payload["maps"]), (int(payload["size"][0]), int(payload["size"][1]))

    def put(self, key: str, maps: Sequence[torch.Tensor], size: tuple[int, int]) -> None:
        buffer = io.BytesIO()
        torch.save({"format": MAP_STORE_FORMAT, "maps": list(maps), "size": list(size)}, buffer)
        data = buffer.getvalue()
        if self.used_bytes() + len(data) > self.max_bytes:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._used = self.used_bytes() + len(data)


def body_engine(model: Detector, *, device: torch.device) -> BodyFn:
    """The frozen backbone body as a function of a normalised batch: ONNX Runtime on a CPU when
    installed (exported once per training, with dynamic height and width), else PyTorch."""
    body = model.backbone.body
    if device.type != "cpu" or not onnxruntime_available():
        return lambda batch: list(body(batch.to(device)))
    import onnxruntime as ort

    buffer = io.BytesIO()
    example = torch.zeros(1, 3, 320, 416)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            body.eval(),
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works; the stub says path only
            input_names=["x"],
            output_names=["p3", "p4", "p5"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
            opset_version=17,
            dynamo=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor) -> list[torch.Tensor]:
        outputs = session.run(None, {"x": batch.detach().contiguous().numpy()})
        return [torch.from_numpy(output) for output in outputs]

    return run


@dataclass
class Prepared:
    """The training views ready when preparation stopped, and what it cost."""

    views: dict[int, list[CachedView]] = field(default_factory=dict)
    seconds: float = 0.0
    computed: int = 0  # plain views computed (not loaded from the store)
    computed_s: float = 0.0  # time spent computing them
    loaded: int = 0  # plain views loaded from the store
    wanted: int = 0  # training images

    @property
    def per_image_s(self) -> float:
        """Measured cost of preparing one image from scratch (decode + backbone), or 0."""
        return self.computed_s / self.computed if self.computed else 0.0


@dataclass(frozen=True)
class Deadlines:
    """Elapsed-time marks (seconds since training started) preparation must respect."""

    plain_views: float  # stop adding plain views past this; train on what is ready
    extra_views: float  # augmented views only while they would end before this


def prepare_views(
    model: Detector,
    refs: Sequence[ImageRef],
    boxes: Sequence[Sequence[NormalizedBox]],
    order: Sequence[int],
    *,
    config: DetectorConfig,
    augment: TrainAugment,
    cached_views: int,
    deadlines: Deadlines,
    elapsed: Callable[[], float],
    on_progress: Callable[[str, float], None],
    should_stop: Callable[[], bool],
    body: BodyFn,
    store: MapStore | None = None,
) -> Prepared:
    """Views of the training images in `order` (a random order, so a cut-off set is a fair
    sample): the plain view of as many as fit before `deadlines.plain_views`, then augmented
    views while a whole round fits before `deadlines.extra_views` and MAX_CACHE_BYTES."""
    started = time.monotonic()
    prepared = Prepared(wanted=len(order))
    decoded: dict[int, DecodedImage] = {}
    decoded_bytes = cached_bytes = 0
    for done, index in enumerate(order):
        if should_stop():
            raise Cancelled("Training was cancelled.")
        if elapsed() >= deadlines.plain_views and prepared.views:
            break
        image = decode_for_training(refs[index], boxes[index], config)
        if decoded_bytes + image.nbytes <= MAX_DECODED_BYTES:
            decoded[index] = image
            decoded_bytes += image.nbytes
        view = _plain_view(model, refs[index].key, image, body, store, prepared)
        prepared.views[index] = [view]
        cached_bytes += view.nbytes
        on_progress("preparing", (done + 1) / max(len(order), 1))
    ready = list(prepared.views)
    for _ in range(1, max(1, cached_views)):
        round_s = _augmented_round_s(prepared, len(ready))
        if elapsed() + round_s > deadlines.extra_views:
            break
        if cached_bytes * 2 > MAX_CACHE_BYTES:
            break
        for index in ready:
            if should_stop():
                raise Cancelled("Training was cancelled.")
            image = decoded.get(index) or decode_for_training(refs[index], boxes[index], config)
            view = cache_view(model, *image.parts(), augment=augment, body=body)
            prepared.views[index].append(view)
            cached_bytes += view.nbytes
    prepared.seconds = time.monotonic() - started
    return prepared


def _plain_view(
    model: Detector,
    key: str,
    image: DecodedImage,
    body: BodyFn,
    store: MapStore | None,
    prepared: Prepared,
) -> CachedView:
    found = store.get(key) if store is not None else None
    if found is not None:
        maps, size = found
        prepared.loaded += 1
        return _with_boxes(maps, size, image)
    started = time.monotonic()
    view = cache_view(model, *image.parts(), augment=None, body=body)
    prepared.computed += 1
    prepared.computed_s += time.monotonic() - started
    if store is not None:
        store.put(key, view.features, view.image_size)
    return view


def _with_boxes(
    maps: tuple[torch.Tensor, ...], size: tuple[int, int], image: DecodedImage
) -> CachedView:
    """A stored plain view with the image's current boxes (they may have been edited since)."""
    height, width = image.pixels.shape[-2:]
    scale = torch.tensor(
        [size[1] / width, size[0] / height, size[1] / width, size[0] / height],
        dtype=torch.float32,
    )
    boxes = image.boxes.as_subclass(torch.Tensor).to(torch.float32) * scale
    return CachedView(features=maps, image_size=size, boxes=boxes, labels=image.labels.clone())


def _augmented_round_s(prepared: Prepared, count: int) -> float:
    per_image = prepared.per_image_s
    if per_image == 0.0:  # every plain view came from the store: assume a typical CPU cost
        per_image = 0.3
    return per_image * count
