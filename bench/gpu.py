"""Train a classification and a detection iteration on a device and print epochs/s and held-out
figures, so the GPU path can be checked on any machine that has one (and the CPU for comparison).

    .venv/bin/python bench/gpu.py [--device auto|cpu|cuda] [--budget-s 120] [--images 200]
        [--threads 0] [--seed 0]

Classification: fine-tuning (training.ml.advanced.fine_tune, LP-FT with augmentation) on
generated 160x160 pictures of 5 shape tags (bench/detection_project_data.py's shapes, one per
image, on cluttered backgrounds), `--images` of them; figures: epochs, epochs/s and the held-out
accuracy of the best checkpoint. Detection: quick detection training (train_detector) on
`--images` project-shaped images of bench/detection_project_data.py; figures: epochs, epochs/s
and mAP@0.5 on its held-out split (COCOeval). Each run gets `--budget-s`. Run it twice, with
`--device cuda` and `--device cpu`, on the same machine for the ratio.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.detection_project_data import TAGS, _background, _sprite, generate_project_set
from bench.detection_training import _file_ref, coco_map
from training.ml.advanced import fine_tune
from training.ml.data import ImageRef
from training.ml.detection import train_detector
from training.ml.device import precision_for, resolve_device


def _shape_pictures(count: int, seed: int) -> tuple[list[ImageRef], np.ndarray]:
    """`count` 160x160 JPEGs, one shape each (its tag), and their one-hot targets."""
    rng = np.random.default_rng(seed)
    refs, labels = [], []
    for index in range(count):
        tag = index % len(TAGS)
        image = _background(rng, 160, 160)
        side = int(rng.integers(60, 120))
        sprite = _sprite(tag, side, side, rng, novel=False)
        x, y = (int(v) for v in rng.integers(0, 160 - side, 2))
        image.paste(sprite, (x, y), sprite)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        refs.append(ImageRef(key=f"shape-{seed}-{index}", open=lambda d=data: io.BytesIO(d)))
        labels.append(tag)
    return refs, np.eye(len(TAGS), dtype=np.float32)[labels]


def classification(device: str, budget_s: float, images: int, seed: int) -> dict[str, float]:
    refs, targets = _shape_pictures(images, seed)
    started = time.monotonic()
    result = fine_tune(
        refs, targets, multilabel=False, backbone="lite0", budget_s=budget_s, seed=seed,
        device=device,
    )  # fmt: skip
    wall_s = time.monotonic() - started
    truth = targets[result.holdout_index].argmax(axis=1)
    accuracy = float((result.holdout_scores.argmax(axis=1) == truth).mean())
    return {
        "wall_s": wall_s,
        "epochs": result.epochs,
        "epochs_per_s": result.epochs / wall_s,
        "best_epoch": result.best_epoch,
        "holdout_accuracy": accuracy,
    }


def detection(device: str, budget_s: float, images: int, seed: int) -> dict[str, float]:
    samples = generate_project_set(
        Path("bench/out/gpu-detection") / f"{images}-{seed}", count=images, seed=seed
    )
    started = time.monotonic()
    result = train_detector(
        [_file_ref(s.path) for s in samples],
        [s.boxes for s in samples],
        num_tags=len(TAGS),
        backbone="lite0",
        budget_s=budget_s,
        seed=seed,
        device=device,
    )
    wall_s = time.monotonic() - started
    held = [samples[i] for i in result.holdout_index]
    map50, _ = coco_map(held, result.holdout_detections)
    training_s = result.timings.get("training_s", wall_s)
    return {
        "wall_s": wall_s,
        "epochs": result.epochs,
        "epochs_per_s": result.epochs / max(training_s, 1e-9),
        "preparing_s": result.timings.get("preparing_s", 0.0),
        "holdout_map50": map50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--budget-s", type=float, default=120.0)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = precision_for(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), mixed precision: {precision.dtype or 'none (float32)'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    cls = classification(args.device, args.budget_s, args.images, args.seed)
    print(
        f"classification (fine-tuning, {args.images} images): {cls['epochs']} epochs in "
        f"{cls['wall_s']:.0f} s = {cls['epochs_per_s']:.3f} epochs/s; best epoch "
        f"{cls['best_epoch']}, held-out accuracy {cls['holdout_accuracy']:.3f}"
    )
    det = detection(args.device, args.budget_s, args.images, args.seed)
    print(
        f"detection (quick, {args.images} images): {det['epochs']} epochs, "
        f"{det['epochs_per_s']:.3f} epochs/s of training after {det['preparing_s']:.0f} s "
        f"preparing; held-out mAP@0.5 {det['holdout_map50']:.3f}"
    )


if __name__ == "__main__":
    main()
