"""Active-learning benchmark: does "what to label next" beat picking at random?

    .venv/bin/python bench/active_learning.py             # 5 seeds x 10 rounds; appends RESULTS.md
    .venv/bin/python bench/active_learning.py --no-write  # print only

The loop the product runs, simulated on a labeled set whose labels stay hidden from the selector
(bench/al_data.py: 1,500 augmented crops of ten scikit-image photographs):

1. Per seed, a stratified 30% test split is set aside and never ranked or revealed; the other 70%
   is the pool. 2 random pool images per tag start labeled.
2. Train quick (the final head of training.ml.quick.train_quick, fitted by its fit_head, on
   lite0 features from training.ml.features, cached on disk under bench/out/al/features) and
   score the held-out test split with that head.
3. The strategy picks 20 pool images, their labels are revealed, back to 2; 10 rounds.

Strategies: "product" = training.ml.ranking.select_for_labeling with the model's pool
probabilities (what Loupe suggests); "random"; and two ablations of the product rule, "typiclust"
(no uncertainty at all) and "margin" (the 20 smallest margins, no diversity). Every strategy sees
the same seeds, splits and starting labels. "Labels needed" interpolates the mean curve linearly
to the first label count that reaches random's final mean accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.al_data import photo_set
from training.ml.features import FeatureCache, embed_images
from training.ml.quick import LinearHead, fit_head
from training.ml.ranking import select_for_labeling
from training.ml.seeding import seed_everything
from training.ml.uncertainty import classification_uncertainty

OUT = Path(__file__).resolve().parent / "out" / "al"
BACKBONE = "lite0"

# (pool features, labeled features, pool probabilities, budget, seed) -> pool indices
Strategy = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], np.ndarray]


def product(
    pool: np.ndarray, labeled: np.ndarray, probs: np.ndarray, budget: int, seed: int
) -> np.ndarray:
    return select_for_labeling(
        pool,
        labeled_embeddings=labeled,
        pool_probs=probs,
        multilabel=False,
        budget=budget,
        seed=seed,
    )


def typiclust(
    pool: np.ndarray, labeled: np.ndarray, probs: np.ndarray, budget: int, seed: int
) -> np.ndarray:
    return select_for_labeling(pool, labeled_embeddings=labeled, budget=budget, seed=seed)


def margin(
    pool: np.ndarray, labeled: np.ndarray, probs: np.ndarray, budget: int, seed: int
) -> np.ndarray:
    scores = classification_uncertainty(probs, multilabel=False)
    return np.argsort(-scores, kind="stable")[:budget]


def random_pick(
    pool: np.ndarray, labeled: np.ndarray, probs: np.ndarray, budget: int, seed: int
) -> np.ndarray:
    return np.random.default_rng(seed).choice(pool.shape[0], size=budget, replace=False)


STRATEGIES: dict[str, Strategy] = {
    "product": product,
    "random": random_pick,
    "typiclust": typiclust,
    "margin": margin,
}


def split(labels: np.ndarray, seed: int, test_fraction: float = 0.3) -> tuple[np.ndarray, ...]:
    """(pool indices, test indices, starting labeled indices) for one seed, stratified by class."""
    rng = np.random.default_rng(seed)
    pool: list[int] = []
    test: list[int] = []
    start: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(test_fraction * members.size)
        test.extend(members[:cut].tolist())
        pool.extend(members[cut:].tolist())
        start.extend(members[cut : cut + 2].tolist())
    return np.array(sorted(pool)), np.array(sorted(test)), np.array(start)


def final_head(features: np.ndarray, targets: np.ndarray, seed: int) -> LinearHead:
    """Quick training's final head: what train_quick fits on all labels after its k folds.

    The benchmark needs only that head (accuracy is measured on the held-out test split, not by
    k-fold), so it calls the same fit_head with the same arguments and skips the fold models,
    which would triple the run time and not change a single number here.
    """
    seed_everything(seed)
    head, _, _ = fit_head(features, targets, multilabel=False)
    return head


def run_seed(
    features: np.ndarray,
    labels: np.ndarray,
    strategy: Strategy,
    seed: int,
    rounds: int,
    budget: int,
) -> tuple[list[int], list[float]]:
    pool, test, labeled = split(labels, seed)
    tags = int(labels.max()) + 1
    eye = np.eye(tags, dtype=np.float32)
    counts: list[int] = []
    accuracy: list[float] = []
    for round_number in range(rounds + 1):
        head = final_head(features[labeled], eye[labels[labeled]], seed)
        predicted = head.probabilities(features[test]).argmax(axis=1)
        counts.append(int(labeled.size))
        accuracy.append(float((predicted == labels[test]).mean()))
        if round_number == rounds:
            break
        unlabeled = np.setdiff1d(pool, labeled)
        probs = head.probabilities(features[unlabeled])
        picks = strategy(
            features[unlabeled], features[labeled], probs, budget, seed * 1000 + round_number
        )
        assert len(set(picks.tolist())) == budget, "a strategy must pick distinct images"
        labeled = np.concatenate([labeled, unlabeled[picks]])
    return counts, accuracy


def labels_to_reach(counts: list[int], curve: np.ndarray, target: float) -> float | None:
    """First label count where the (linearly interpolated) curve reaches `target`."""
    for i, value in enumerate(curve):
        if value >= target - 1e-12:
            if i == 0:
                return float(counts[0])
            before = curve[i - 1]
            fraction = (target - before) / (value - before)
            return counts[i - 1] + fraction * (counts[i] - counts[i - 1])
    return None


def embed(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    data = photo_set(per_class=per_class)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 200 == 0 or done == total:
            print(f"  embedded {done}/{total} ({time.perf_counter() - started:.0f} s)", flush=True)

    features = embed_images(
        data.refs, backbone=BACKBONE, cache=FeatureCache(OUT / "features"), on_progress=progress
    )
    return features, data.labels


def imbalanced(labels: np.ndarray, ratio: float) -> np.ndarray:
    """Indices keeping class i at a share ratio ** (-i / (classes - 1)) of its images (seed 0)."""
    classes = int(labels.max()) + 1
    rng = np.random.default_rng(0)
    keep: list[int] = []
    for label in range(classes):
        members = np.flatnonzero(labels == label)
        count = max(4, round(members.size * ratio ** (-label / max(1, classes - 1))))
        keep.extend(sorted(rng.choice(members, size=count, replace=False).tolist()))
    return np.array(keep)


def markdown(
    results: dict[str, dict[str, list]],
    counts: list[int],
    seeds: int,
    sizes: np.ndarray,
    command: str,
) -> str:
    names = list(results)
    means = {name: np.mean(results[name]["accuracy"], axis=0) for name in names}
    stds = {name: np.std(results[name]["accuracy"], axis=0) for name in names}
    rows = [
        "| labels | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for i, count in enumerate(counts):
        cells = [f"{100 * means[n][i]:.1f} ± {100 * stds[n][i]:.1f}" for n in names]
        rows.append(f"| {count} | " + " | ".join(cells) + " |")
    target = float(means["random"][-1])
    random_needs = labels_to_reach(counts, means["random"], target)
    lines = []
    for name in names:
        needed = labels_to_reach(counts, means[name], target)
        ratio = "not reached" if needed is None else f"{needed:.0f} labels"
        if needed is not None and random_needs:
            ratio += f" ({100 * needed / random_needs:.0f}% of random's {random_needs:.0f})"
        lines.append(f"- {name}: {ratio}")
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"Data: bench/al_data.py, {sizes.sum()} images, {sizes.size} classes of "
            f"{sizes.min()}-{sizes.max()} images (augmented crops of "
            "scikit-image photographs); lite0 features; per seed a stratified 30% test split "
            "never ranked; start 2 labels per tag, 10 rounds of 20, "
            f"{seeds} seeds (0-{seeds - 1}), the same splits and starts for every strategy. "
            "Test accuracy (%) of quick training's final head, mean ± std over seeds:",
            "",
            *rows,
            "",
            f"Labels needed to reach random's final mean accuracy ({100 * target:.1f}%):",
            *lines,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument(
        "--imbalance", type=float, default=1.0, help="largest/smallest class size ratio"
    )
    parser.add_argument("--strategies", default="product,random,typiclust,margin")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    features, labels = embed(args.per_class)
    if args.imbalance > 1.0:
        keep = imbalanced(labels, args.imbalance)
        features, labels = features[keep], labels[keep]
    # The heads are small (<= 220 x 1,280): one thread avoids thread hand-off overhead.
    torch.set_num_threads(1)
    results: dict[str, dict[str, list]] = {}
    counts: list[int] = []
    for name in args.strategies.split(","):
        started = time.perf_counter()
        runs = [
            run_seed(features, labels, STRATEGIES[name], seed, args.rounds, args.budget)
            for seed in range(args.seeds)
        ]
        counts = runs[0][0]
        results[name] = {"accuracy": [acc for _, acc in runs]}
        mean = np.mean(results[name]["accuracy"], axis=0)
        print(
            f"{name:>10}: " + " ".join(f"{100 * v:.1f}" for v in mean),
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "curves.json").write_text(json.dumps({"counts": counts, **results}, indent=1))
    from bench.common import append_result, command_line

    text = markdown(results, counts, args.seeds, np.bincount(labels), command_line())
    print(text)
    if not args.no_write and "random" in results and "product" in results:
        append_result("Issue 5: active-learning benchmark", text)


if __name__ == "__main__":
    main()
