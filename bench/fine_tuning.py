"""Fine-tuning's epochs per minute and held-out accuracy per budget: the default (cached) recipe
(issue 15, item 2) against the legacy one, side by side in one run on the same data and split.

    .venv/bin/python bench/fine_tuning.py --per-class 100 --budgets 300 600 900 --parallel
    .venv/bin/python bench/fine_tuning.py --step-timing

The data is bench/al_data.py's glyph set (ten digits drawn on photographs, 128 px), where a
linear probe on frozen lite0 features stays below 60 %, so fine-tuning has to move the features.
The frozen embeddings for the linear-probe start are computed once before the runs (both recipes
share that start through one FeatureCache folder), so every budget is spent on fine-tuning. For
each budget each recipe runs once: one after the other in this process, or with --parallel each
recipe in its own process at the same time (one core each on a two-core machine, so both see
the same load). The table gives epochs, epochs per minute (epochs over the budget's wall time
after the linear-probe start, the cached recipe's decoding and caching included), the held-out
accuracy of the kept checkpoint, and the seconds per phase. Ratios are cached / legacy.

--step-timing times single training steps (forward + backward + optimizer, batch 16) instead:
the legacy full network at the input size against the cached recipe's trainable suffix at the
glyphs' 128 px, fused and default AdamW, at 1 and 2 torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torch import nn

from bench.al_data import glyph_set
from training.ml.advanced import FineTuneRecipe, fine_tune
from training.ml.advanced.loop import build_optimizer
from training.ml.advanced.model import Classifier, classifier_loss
from training.ml.backbones import build_feature_extractor, get_backbone
from training.ml.data import ImageRef
from training.ml.errors import BudgetExhausted
from training.ml.features import FeatureCache, embed_images
from training.ml.quick import fit_head

RECIPES = {"legacy": FineTuneRecipe.legacy(), "cached": FineTuneRecipe()}
# (recipe, px, fused AdamW, channels-last) for --step-timing
STEP_VARIANTS = (
    ("legacy", 224, False, False),
    ("cached", 128, False, False),
    ("cached", 128, True, False),
    ("cached", 128, True, True),
)


def _run(
    refs: list[ImageRef],
    targets: np.ndarray,
    labels: np.ndarray,
    name: str,
    args: argparse.Namespace,
    budget: float,
) -> dict[str, Any]:
    """One fine-tuning run as a table row (epochs 0 when not one epoch fitted the budget)."""
    row: dict[str, Any] = {"budget": budget, "recipe": name, "epochs": 0}
    started = time.monotonic()
    try:
        result = fine_tune(
            refs,
            targets,
            multilabel=False,
            backbone=args.backbone,
            budget_s=budget,
            seed=0,
            cache=FeatureCache(args.cache_dir),
            recipe=RECIPES[name],
        )
    except BudgetExhausted:
        return row
    wall = time.monotonic() - started
    training_s = wall - result.spent_s.get("linear-probe start", 0.0)
    held = result.holdout_index
    row.update(
        epochs=result.epochs,
        best_epoch=result.best_epoch,
        per_minute=result.epochs * 60.0 / max(training_s, 1e-6),
        accuracy=float((result.holdout_scores.argmax(axis=1) == labels[held]).mean()),
        train_size=result.train_size,
        phases=dict(result.spent_s),
        holdout_index=held.tolist(),
        load=os.getloadavg()[0],
    )
    return row


def _print_row(row: dict[str, Any]) -> None:
    if not row["epochs"]:
        print(f"| {row['budget']:g} s | {row['recipe']} | 0 (budget exhausted: no model) | 0 | - |")
        return
    phases = ", ".join(f"{k} {v:.1f}" for k, v in row["phases"].items())
    print(
        f"| {row['budget']:g} s | {row['recipe']} | {row['epochs']} ({row['best_epoch']}) | "
        f"{row['per_minute']:.2f} | {row['accuracy'] * 100:.1f} % | {row['train_size']} | "
        f"{phases} |",
        flush=True,
    )


def _child_command(name: str, args: argparse.Namespace, output: Path) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--per-class", str(args.per_class),
        "--budgets", *[f"{b:g}" for b in args.budgets],
        "--backbone", args.backbone,
        "--threads", str(args.threads),
        "--recipes", name,
        "--cache-dir", args.cache_dir,
        "--json", str(output),
    ]  # fmt: skip


def _parallel_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each recipe's rows from its own process, all recipes running at the same time."""
    with tempfile.TemporaryDirectory(prefix="bench-fine-tuning-") as folder:
        outputs = {name: Path(folder) / f"{name}.json" for name in args.recipes}
        children = [
            subprocess.Popen(_child_command(name, args, outputs[name]), stdout=subprocess.DEVNULL)
            for name in args.recipes
        ]
        for child in children:
            if child.wait() != 0:
                raise SystemExit(f"A recipe's process failed: {child.args}")
        by_recipe = {name: json.loads(outputs[name].read_text()) for name in args.recipes}
    return [row for budget_rows in zip(*by_recipe.values(), strict=True) for row in budget_rows]


def _step_seconds(
    backbone: str, recipe: FineTuneRecipe, *, size: int, fused: bool, steps: int = 4
) -> tuple[float, float]:
    """Mean (forward + backward, optimizer) seconds of one step of batch 16, as fine_tune
    runs it (the recipe's frozen prefix computed beforehand, BatchNorm frozen)."""
    spec = get_backbone(backbone)
    torch.manual_seed(0)
    model = Classifier(build_feature_extractor(backbone), nn.Linear(spec.feature_dim, 10))
    model.freeze_prefix(min(recipe.frozen_blocks, model.splittable_blocks()))
    memory = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(memory_format=memory)
    optimizer = build_optimizer(model, 3e-4, fused=fused)
    with torch.inference_mode():
        model.eval()
        inputs = model.prefix(torch.randn(16, 3, size, size)).contiguous(memory_format=memory)
    inputs = inputs.clone()  # out of inference mode, so autograd accepts it
    targets = torch.eye(10)[torch.randint(0, 10, (16,))]
    model.train_with_frozen_norm()
    spent = np.zeros(2)
    for step in range(steps + 1):  # the first step warms up and is not counted
        started = time.perf_counter()
        loss = classifier_loss(model.suffix(inputs), targets, False)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        stepped = time.perf_counter()
        optimizer.step()
        if step:
            spent += (stepped - started, time.perf_counter() - stepped)
    return float(spent[0] / steps), float(spent[1] / steps)


def _step_timing(args: argparse.Namespace) -> None:
    print(f"step timing, batch 16, backbone {args.backbone}, load {os.getloadavg()[0]:.1f}")
    print(
        "| threads | recipe | px | frozen blocks | channels-last | AdamW | "
        "forward+backward s | optimizer s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, size, fused, channels_last in STEP_VARIANTS:
            recipe = replace(RECIPES[name], channels_last=channels_last)
            timing = _step_seconds(args.backbone, recipe, size=size, fused=fused)
            print(
                f"| {threads} | {name} | {size} | {recipe.frozen_blocks} | "
                f"{'yes' if channels_last else 'no'} | {'fused' if fused else 'default'} | "
                f"{timing[0]:.3f} | {timing[1]:.3f} |",
                flush=True,
            )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def _probe_accuracy(
    features: np.ndarray, targets: np.ndarray, labels: np.ndarray, held: np.ndarray
) -> float:
    train = np.setdiff1d(np.arange(len(labels)), held)
    head, _, _ = fit_head(features[train], targets[train], multilabel=False)
    return float((head.probabilities(features[held]).argmax(axis=1) == labels[held]).mean())


def _print_summary(
    rows: list[dict[str, Any]], features: np.ndarray, targets: np.ndarray, labels: np.ndarray
) -> None:
    done = [row for row in rows if row["epochs"]]
    if done:
        held = np.asarray(done[0]["holdout_index"])
        probe = _probe_accuracy(features, targets, labels, held)
        print(f"linear probe (frozen features, same split): {probe * 100:.1f} % held-out")
    by_key = {(row["budget"], row["recipe"]): row for row in rows}
    for budget in sorted({row["budget"] for row in rows}):
        old, new = by_key.get((budget, "legacy")), by_key.get((budget, "cached"))
        if old is None or new is None or not old["epochs"] or not new["epochs"]:
            continue
        print(
            f"budget {budget:g} s: epochs/min cached / legacy = "
            f"{new['per_minute'] / old['per_minute']:.2f}x, held-out accuracy cached - legacy = "
            f"{(new['accuracy'] - old['accuracy']) * 100:+.1f} points"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=40, help="glyph images per digit")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 120.0, 180.0])
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (the worker's default: 1)"
    )
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--parallel", action="store_true", help="one process per recipe")
    parser.add_argument("--step-timing", action="store_true", help="time single steps only")
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)  # set for --parallel's children
    parser.add_argument("--json", help=argparse.SUPPRESS)  # a child's rows go here
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.step_timing:
        _step_timing(args)
        return
    data = glyph_set(per_class=args.per_class)
    refs, labels = data.refs, data.labels
    targets = np.eye(len(data.class_names), dtype=np.float32)[labels]
    folder = tempfile.TemporaryDirectory(prefix="bench-fine-tuning-cache-")
    args.cache_dir = args.cache_dir or folder.name
    features = embed_images(refs, backbone=args.backbone, cache=FeatureCache(args.cache_dir))
    if args.json:  # a --parallel child: its rows so far after every run, to watch progress
        rows = []
        for budget in args.budgets:
            rows.append(_run(refs, targets, labels, args.recipes[0], args, budget))
            Path(args.json).write_text(json.dumps(rows))
        return
    print(
        f"glyph set: {len(refs)} images of 128 px, {len(data.class_names)} tags; backbone "
        f"{args.backbone}, {args.threads} thread(s) per run, "
        f"{'recipes in parallel processes' if args.parallel else 'recipes one after the other'}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print(
        "| budget | recipe | epochs (best) | epochs/min | held-out acc. | train px | "
        "seconds per phase |"
    )
    print("|---|---|---|---|---|---|---|", flush=True)
    if args.parallel and len(args.recipes) > 1:
        rows = _parallel_rows(args)
        for row in rows:
            _print_row(row)
    else:
        rows = []
        for budget in args.budgets:
            for name in args.recipes:
                rows.append(_run(refs, targets, labels, name, args, budget))
                _print_row(rows[-1])
    _print_summary(rows, features, targets, labels)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    folder.cleanup()


if __name__ == "__main__":
    main()
