"""Advanced (fine-tuning) vs quick (linear head on frozen features) on a task where frozen
ImageNet features are not enough: classes that differ only by a faint texture.

    .venv/bin/python bench/advanced_vs_quick.py --images 400 --budget 600 --contrast 6

Both are scored on the same held-out images (the split fine_tune makes); quick's head is fitted
on the same training images. Quick's 5-fold accuracy on all images is printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.data import fine_grained_textures, one_hot, photo_classes, refs_for
from training.ml.advanced import fine_tune
from training.ml.features import FeatureCache, embed_images
from training.ml.quick import fit_head, train_quick

DATA = Path(os.environ.get("LOUPE_BENCH_DATA", Path(tempfile.gettempdir()) / "loupe-bench"))


def compare(name: str, items, classes: int, args: argparse.Namespace) -> None:
    refs = refs_for(items)
    targets = one_hot(items, classes)
    labels = targets.argmax(axis=1)
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        started = time.perf_counter()
        features = embed_images(refs, backbone=args.backbone, cache=cache)
        quick = train_quick(features, targets, multilabel=False, seed=0)
        quick_s = time.perf_counter() - started
        kfold = float((quick.oof_scores.argmax(axis=1) == labels).mean())
        started = time.perf_counter()
        phases: list[str] = []
        result = fine_tune(
            refs,
            targets,
            multilabel=False,
            backbone=args.backbone,
            budget_s=args.budget,
            seed=0,
            cache=cache,
            on_progress=lambda phase, fraction: phases.append(phase),
        )
        tune_s = time.perf_counter() - started
    held = result.holdout_index
    train = np.setdiff1d(np.arange(len(refs)), held)
    head, _, _ = fit_head(features[train], targets[train], multilabel=False)
    quick_held = float((head.probabilities(features[held]).argmax(axis=1) == labels[held]).mean())
    tuned_held = float((result.holdout_scores.argmax(axis=1) == labels[held]).mean())
    losses = ", ".join(f"{loss:.3f}" for loss in result.holdout_losses)
    print(
        f"| {name} | {len(refs)} / {len(held)} | {kfold * 100:.1f} % ({quick_s:.0f} s) | "
        f"{quick_held * 100:.1f} % | {tuned_held * 100:.1f} % | {result.epochs} "
        f"(best {result.best_epoch}) in {tune_s:.0f} s | {losses} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--budget", type=float, default=300)
    parser.add_argument("--contrast", type=float, default=6.0, help="texture amplitude, 0-255")
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", action="store_true", help="also run on the photo classes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"backbone {args.backbone}, budget {args.budget:g} s, threads {args.threads}")
    print(
        "| dataset | images / held out | quick 5-fold acc. | quick held-out acc. | "
        "advanced held-out acc. | epochs | held-out loss per epoch (0 = linear probe) |"
    )
    print("|---|---|---|---|---|---|---|")
    textures = fine_grained_textures(DATA, images=args.images, contrast=args.contrast)
    compare(f"faint texture (±{args.contrast:g}/255), 4 tags", textures, 4, args)
    if args.photos:
        compare("photos, 10 tags", photo_classes(DATA, images=args.images, classes=10), 10, args)
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
