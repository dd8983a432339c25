"""Detector training recipes side by side: frozen backbone, end to end, end to end as before.

    .venv/bin/python bench/detection_recipes.py [--recipes frozen,end-to-end,end-to-end-legacy]
        [--images 400] [--novel 100] [--budget-s 600] [--seed 0] [--record]

Each recipe trains in its own process at the same time (one torch thread each, as the train
worker runs), on the same generated project-shaped set (bench/detection_project_data.py) with
the same budget, so all see the same load and the ratios between them hold even on a busy
machine. Recipes:

- frozen: quick detection training (TrainOptions()), the backbone frozen and cached;
- end-to-end: the backbone's blocks from DetectorConfig.trainable_from_block on train too, the
  frozen stem and early blocks computed once per cached view (TrainOptions(frozen_backbone=
  False));
- end-to-end-legacy: the end-to-end recipe before issue 15, decoding, augmenting and running the
  whole network for every image at every step (cached_prefix=False).

Figures per recipe: epochs and training steps and their rate per minute of training, where the
time went, and mAP@0.5 / mAP@[.5:.95] (pycocotools) on training's held-out split and on images
whose objects have colours and a pattern training never saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import append_result, command_line
from bench.detection_project_data import generate_project_set
from bench.detection_training import run
from training.ml.detection import TrainOptions

RECIPES = {
    "frozen": TrainOptions(),
    "end-to-end": TrainOptions(frozen_backbone=False),
    "end-to-end-legacy": TrainOptions(frozen_backbone=False, cached_prefix=False),
}


def _one(args: argparse.Namespace) -> None:
    """Child process: one recipe, its figures as JSON on the last line of stdout."""
    torch.set_num_threads(1)
    figures = run(
        images=args.images,
        novel=args.novel,
        budget_s=args.budget_s,
        seed=args.seed,
        data_dir=args.data,
        busy=False,
        options=RECIPES[args.one],
    )
    print(json.dumps(figures), flush=True)


def _side_by_side(args: argparse.Namespace, recipes: list[str]) -> dict[str, dict[str, float]]:
    # Generated once, before any timing starts: the children find the files in place.
    generate_project_set(
        args.data / f"train-{args.images}-{args.seed}", count=args.images, seed=args.seed
    )
    generate_project_set(
        args.data / f"novel-{args.novel}-{args.seed}",
        count=args.novel,
        seed=args.seed + 1000,
        novel=True,
    )
    base = [sys.executable, __file__, "--images", str(args.images), "--novel", str(args.novel)]
    base += ["--budget-s", str(args.budget_s), "--seed", str(args.seed), "--data", str(args.data)]
    children = {
        name: subprocess.Popen([*base, "--one", name], stdout=subprocess.PIPE, text=True)
        for name in recipes
    }
    results = {}
    for name, child in children.items():
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"{name} failed (exit {child.returncode})")
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results


def report(results: dict[str, dict[str, float]], load: tuple[float, float]) -> str:
    rows = []
    for name, f in results.items():
        minutes = f["training_s"] / 60
        rows.append(
            f"| {name} | {int(f['epochs'])} | {f['epochs'] / minutes:.2f} | "
            f"{f['steps'] / minutes:.1f} | {f['preparing_s']:.0f} / {f['training_s']:.0f} / "
            f"{f['scoring_s']:.0f} | {f['holdout_map50']:.3f} / {f['holdout_map']:.3f} | "
            f"{f['novel_map50']:.3f} / {f['novel_map']:.3f} |"
        )
    ratios = []
    legacy = results.get("end-to-end-legacy")
    new = results.get("end-to-end")
    if legacy and new:
        per_min = {n: f["epochs"] / f["training_s"] for n, f in (("new", new), ("old", legacy))}
        steps = {n: f["steps"] / f["training_s"] for n, f in (("new", new), ("old", legacy))}
        ratios.append(
            f"End to end, cached prefix / legacy: epochs per minute "
            f"**{per_min['new'] / per_min['old']:.2f}x**, steps per minute "
            f"{steps['new'] / steps['old']:.2f}x; held-out mAP@0.5 "
            f"{new['holdout_map50'] - legacy['holdout_map50']:+.3f}, novel mAP@0.5 "
            f"{new['novel_map50'] - legacy['novel_map50']:+.3f}."
        )
    first = next(iter(results.values()))
    return (
        "### Detector recipes side by side (issue 15, item 2)\n\n"
        f"Command: `{command_line()}`\n\n"
        f"Each recipe in its own process at the same time, one torch thread each; "
        f"{int(first['training_images'] + first['holdout_images'])} training-set images "
        f"(bench/detection_project_data.py), {int(first['novel_images'])} novel; budget "
        f"{first['budget_s']:.0f} s; load average {load[0]:.1f} before, {load[1]:.1f} after.\n\n"
        "| recipe | epochs | epochs/min | steps/min | preparing / training / scoring s | "
        "held-out mAP@0.5 / @[.5:.95] | novel mAP@0.5 / @[.5:.95] |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + "\n".join(ratios) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="frozen,end-to-end,end-to-end-legacy")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--novel", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path("bench/out/detection-project"))
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--one", choices=sorted(RECIPES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args)
        return
    recipes = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise SystemExit(f"Unknown recipes {unknown}; choose from {sorted(RECIPES)}.")
    before = os.getloadavg()[0]
    started = time.monotonic()
    results = _side_by_side(args, recipes)
    text = report(results, (before, os.getloadavg()[0]))
    text += f"\n_Wall time of the whole run: {time.monotonic() - started:.0f} s._\n"
    print(text)
    if args.record:
        append_result("Issue 15: training that keeps up with real datasets", text)


if __name__ == "__main__":
    main()
