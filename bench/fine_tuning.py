"""Fine-tuning's epochs per minute and held-out accuracy per budget: the cached recipe (issue 15,
item 2) against the legacy one, side by side in one run on the same data and split.

    .venv/bin/python bench/fine_tuning.py --per-class 40 --budgets 60 120 180

The data is bench/al_data.py's glyph set (ten digits drawn on photographs, 128 px), where a
linear probe on frozen lite0 features stays below 60 %, so fine-tuning has to move the features.
The frozen embeddings for the linear-probe start are computed once before the runs (both recipes
share that start), so every budget is spent on fine-tuning. For each budget both recipes run
once, legacy first; the table gives epochs, epochs per minute (epochs over the budget's wall time
after the linear-probe start, the cached recipe's decoding and caching included), the held-out
accuracy of the kept checkpoint, and the seconds per phase. Ratios are cached / legacy.
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

from bench.al_data import glyph_set
from training.ml.advanced import FineTuneRecipe, FineTuneResult, fine_tune
from training.ml.data import ImageRef
from training.ml.errors import BudgetExhausted
from training.ml.features import FeatureCache, embed_images
from training.ml.quick import fit_head

RECIPES = {"legacy": FineTuneRecipe.legacy(), "cached": FineTuneRecipe()}


def _run(
    refs: list[ImageRef],
    targets: np.ndarray,
    labels: np.ndarray,
    recipe: FineTuneRecipe,
    args: argparse.Namespace,
    budget: float,
) -> tuple[FineTuneResult | None, float, float]:
    """(result, held-out accuracy, epochs per minute); None, nan, 0 when no epoch fitted."""
    started = time.monotonic()
    try:
        result = fine_tune(
            refs,
            targets,
            multilabel=False,
            backbone=args.backbone,
            budget_s=budget,
            seed=0,
            cache=args.cache,
            recipe=recipe,
        )
    except BudgetExhausted:
        return None, float("nan"), 0.0
    wall = time.monotonic() - started
    training_s = wall - result.spent_s.get("linear-probe start", 0.0)
    held = result.holdout_index
    accuracy = float((result.holdout_scores.argmax(axis=1) == labels[held]).mean())
    return result, accuracy, result.epochs * 60.0 / max(training_s, 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=40, help="glyph images per digit")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 120.0, 180.0])
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = glyph_set(per_class=args.per_class)
    refs, labels = data.refs, data.labels
    targets = np.eye(len(data.class_names), dtype=np.float32)[labels]
    folder = tempfile.TemporaryDirectory()
    args.cache = FeatureCache(folder.name)
    features = embed_images(refs, backbone=args.backbone, cache=args.cache)
    print(
        f"glyph set: {len(refs)} images of 128 px, {len(data.class_names)} tags; backbone "
        f"{args.backbone}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| budget | recipe | epochs (best) | epochs/min | held-out acc. | train px | "
        "seconds per phase |"
    )
    print("|---|---|---|---|---|---|---|")
    ratios: list[tuple[float, float, float]] = []
    probe_accuracy = None
    for budget in args.budgets:
        row: dict[str, tuple[float, float]] = {}
        for name in args.recipes:
            result, accuracy, per_minute = _run(refs, targets, labels, RECIPES[name], args, budget)
            row[name] = (per_minute, accuracy)
            if result is None:
                print(f"| {budget:g} s | {name} | 0 (budget exhausted: no model) | 0 | - | | |")
                continue
            if probe_accuracy is None:
                held = result.holdout_index
                train = np.setdiff1d(np.arange(len(refs)), held)
                head, _, _ = fit_head(features[train], targets[train], multilabel=False)
                predicted = head.probabilities(features[held]).argmax(axis=1)
                probe_accuracy = float((predicted == labels[held]).mean())
            phases = ", ".join(f"{k} {v:.1f}" for k, v in result.spent_s.items())
            print(
                f"| {budget:g} s | {name} | {result.epochs} ({result.best_epoch}) | "
                f"{per_minute:.2f} | {accuracy * 100:.1f} % | {result.train_size} | {phases} |",
                flush=True,
            )
        if set(row) == set(RECIPES):
            (old_rate, old_acc), (new_rate, new_acc) = row["legacy"], row["cached"]
            ratios.append((budget, new_rate / max(old_rate, 1e-9), (new_acc - old_acc) * 100))
    if probe_accuracy is not None:
        print(f"linear probe (frozen features, same split): {probe_accuracy * 100:.1f} % held-out")
    for budget, rate, gain in ratios:
        print(
            f"budget {budget:g} s: epochs/min cached / legacy = {rate:.2f}x, "
            f"held-out accuracy cached - legacy = {gain:+.1f} points"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    folder.cleanup()


if __name__ == "__main__":
    main()
