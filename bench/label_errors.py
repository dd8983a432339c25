"""Label-error candidates: do they find flipped labels? Precision and recall at top-k.

    .venv/bin/python bench/label_errors.py [--dataset easy|hard] [--per-class 100] [--seeds 3]
                                           [--no-write]

A clean labeled set (bench/al_data.py; "easy" = crops of ten photographs, where a linear probe
on lite0 features is ~98% right; "hard" = digits on photographs, where it is not), embedded with
Loupe's own features (training.ml.features, lite0). For each noise rate (5%, 10%) and seed, that
share of the labels is flipped to another class at random; quick training runs as the worker
runs it (training.ml.quick.train_quick: k-fold out-of-fold scores), and the candidates come from
the same calls the "Possible mislabels" queue makes (training.ml.confident_learning:
multiclass_probabilities, then find_label_errors, ranked by normalized margin). Reported:
precision and recall of the first k candidates, k = the number of flips (fewer if fewer
candidates), and of the whole candidate set; the clean set's out-of-fold accuracy (the probe).
Goal: precision >= 0.6 at 10% noise on a set where the probe reaches >= 90%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.al_data import PhotoSet, glyph_set, photo_set  # noqa: E402
from bench.common import append_result, command_line, machine_line  # noqa: E402
from training.ml.confident_learning import (  # noqa: E402
    find_label_errors,
    multiclass_probabilities,
)
from training.ml.features import FeatureCache, embed_images  # noqa: E402
from training.ml.quick import train_quick  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "label_errors"
NOISE = (0.05, 0.10)


def candidates(features: np.ndarray, labels: np.ndarray, classes: int) -> list[int]:
    """Rows flagged, most likely error first, as the queue computes them."""
    targets = np.eye(classes, dtype=np.float32)[labels]
    result = train_quick(features, targets, multilabel=False, seed=0)
    probs = multiclass_probabilities(result.oof_scores, with_negative=False)
    return [c.row for c in find_label_errors(probs, labels)]


def probe_accuracy(features: np.ndarray, labels: np.ndarray, classes: int) -> float:
    targets = np.eye(classes, dtype=np.float32)[labels]
    result = train_quick(features, targets, multilabel=False, seed=0)
    return float((result.oof_scores.argmax(axis=1) == labels).mean())


def run(data: PhotoSet, features: np.ndarray, seeds: int) -> tuple[float, list[str]]:
    classes = len(data.class_names)
    probe = probe_accuracy(features, data.labels, classes)
    lines = []
    for noise in NOISE:
        figures: dict[str, list[float]] = {"p": [], "r": [], "pa": [], "ra": [], "n": []}
        for seed in range(seeds):
            rng = np.random.default_rng(100 + seed)
            n = len(data.labels)
            flipped = rng.choice(n, size=round(noise * n), replace=False)
            noisy = data.labels.copy()
            noisy[flipped] = (noisy[flipped] + rng.integers(1, classes, flipped.size)) % classes
            flagged = candidates(features, noisy, classes)
            k = flipped.size
            top = flagged[:k]
            truth = set(flipped.tolist())
            hits = len(truth & set(top))
            hits_all = len(truth & set(flagged))
            figures["p"].append(hits / max(len(top), 1))
            figures["r"].append(hits / k)
            figures["pa"].append(hits_all / max(len(flagged), 1))
            figures["ra"].append(hits_all / k)
            figures["n"].append(len(flagged))
            print(
                f"  noise {noise:.0%} seed {seed}: {k} flips, {len(flagged)} candidates, "
                f"top-k precision {hits / max(len(top), 1):.2f} recall {hits / k:.2f}",
                flush=True,
            )
        mean = {key: statistics.mean(values) for key, values in figures.items()}
        low = min(figures["p"])
        lines.append(
            f"| {noise:.0%} | {round(noise * len(data.labels))} | {mean['p']:.2f} (min {low:.2f}) "
            f"| {mean['r']:.2f} | {mean['n']:.0f} | {mean['pa']:.2f} | {mean['ra']:.2f} |"
        )
    return probe, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=("easy", "hard"), default="easy")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    make = photo_set if args.dataset == "easy" else glyph_set
    data = make(per_class=args.per_class, seed=0)
    features = embed_images(data.refs, backbone="lite0", cache=FeatureCache(OUT / "features"))
    probe, lines = run(data, features, args.seeds)
    table = "\n".join(
        [
            f"Probe (clean labels, out-of-fold accuracy): {probe:.1%}.",
            "",
            "| noise | flips (k) | precision at k | recall at k | candidates | precision, all "
            "| recall, all |",
            "|---|---|---|---|---|---|---|",
            *lines,
        ]
    )
    print(table)
    if not args.no_write:
        append_result(
            "Issue 13: label-error candidates (bench/label_errors.py)",
            f"`{command_line()}` on {machine_line()}; {args.dataset} set, "
            f"{len(data.labels)} images ({len(data.class_names)} classes), lite0 features, quick "
            f"head out-of-fold, {args.seeds} seeds (means). Candidates from "
            "training.ml.confident_learning (multiclass_probabilities + find_label_errors), as "
            "the Possible mislabels queue computes them.\n\n" + table,
        )


if __name__ == "__main__":
    main()
