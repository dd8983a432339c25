"""Quick training: time from start to metrics (cold and with 50 new images), accuracy against
scikit-learn's LogisticRegression on the same cached features and folds, and peak memory.

    .venv/bin/python bench/quick_training.py --images 1000 --new 50
    .venv/bin/python bench/quick_training.py --memory 5000      # peak RSS, in a child process
    .venv/bin/python bench/quick_training.py --probe     # vs LogisticRegressionCV, 6 sets
    .venv/bin/python bench/quick_training.py --probe-time   # time before/after the inner CV
    .venv/bin/python bench/quick_training.py --levels-weights 1,3,6   # the blocks' weight

"Start to metrics" = embed_images (fresh feature cache) + train_quick (5-fold CV + final head) +
classification_metrics, exactly what the training task calls; the Django task adds reading rows
and writing results. The warm run reuses the cache with `--new` images replaced by unseen ones.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.data import fine_grained_textures, one_hot, photo_classes, refs_for
from training.ml.features import FeatureCache, embed_images, stock_engine
from training.ml.metrics import classification_metrics
from training.ml.quick import stratified_folds, train_quick

DATA = Path(os.environ.get("LOUPE_BENCH_DATA", Path(tempfile.gettempdir()) / "loupe-bench"))


def start_to_metrics(
    refs, targets, cache: FeatureCache, backbone: str
) -> tuple[float, float, dict]:
    wall, cpu = time.perf_counter(), time.process_time()
    features = embed_images(refs, backbone=backbone, cache=cache)
    result = train_quick(features, targets, multilabel=False, seed=0)
    metrics = classification_metrics(targets, result.oof_scores, multiclass=True)
    return time.perf_counter() - wall, time.process_time() - cpu, metrics


def sklearn_agreement(features: np.ndarray, targets: np.ndarray, label: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = targets.argmax(axis=1)
    started = time.perf_counter()
    ours = train_quick(features, targets, multilabel=False, seed=0)
    ours_s = time.perf_counter() - started
    predictions = np.zeros(len(labels), dtype=np.int64)
    started = time.perf_counter()
    for fold in np.unique(ours.fold_of):  # the very same folds
        train = ours.fold_of != fold
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        model.fit(features[train], labels[train])
        predictions[~train] = model.predict(features[~train])
    sk_s = time.perf_counter() - started
    ours_acc = float((ours.oof_scores.argmax(axis=1) == labels).mean())
    sk_acc = float((predictions == labels).mean())
    print(
        f"| {label} | {len(labels)} | {ours_acc * 100:.2f} % ({ours_s:.1f} s) | "
        f"{sk_acc * 100:.2f} % ({sk_s:.1f} s) | {(ours_acc - sk_acc) * 100:+.2f} |"
    )


def timings(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    items = photo_classes(DATA, images=args.images + args.new, classes=args.classes)
    refs = refs_for(items)
    targets = one_hot(items, args.classes)
    base_refs, base_targets = refs[: args.images], targets[: args.images]
    # The new images replace the first `new` ones: same dataset size, `new` unseen files.
    warm_refs = refs[args.images :] + base_refs[args.new :]
    warm_targets = np.concatenate([targets[args.images :], base_targets[args.new :]])
    stock_engine(args.backbone)  # built once per worker process, not per training
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        cold_wall, cold_cpu, metrics = start_to_metrics(
            base_refs, base_targets, cache, args.backbone
        )
        warm_wall, warm_cpu, warm_metrics = start_to_metrics(
            warm_refs, warm_targets, cache, args.backbone
        )
        features = embed_images(base_refs, backbone=args.backbone, cache=cache)
    print(
        f"\n{args.images} images (640x480 JPEG), {args.classes} tags, backbone {args.backbone}, "
        f"threads {args.threads}"
    )
    print(
        "| run | wall s | CPU s | k-fold precision / recall / mAP | goal |\n|---|---|---|---|---|"
    )
    for name, wall, cpu, m, goal in (
        ("cold (empty cache)", cold_wall, cold_cpu, metrics, "<= 60 s"),
        (f"{args.new} new images", warm_wall, warm_cpu, warm_metrics, "<= 5 s"),
    ):
        print(
            f"| {name} | {wall:.1f} | {cpu:.1f} | {m['precision']:.3f} / {m['recall']:.3f} / "
            f"{m['map']:.3f} | {goal} |"
        )
    print(
        "\n| dataset | images | ours (k-fold acc., time) | sklearn LogisticRegression "
        "| diff (pts) |"
    )
    print("|---|---|---|---|---|")
    sklearn_agreement(features, base_targets, f"photos, {args.classes} tags")
    stripes = fine_grained_textures(DATA, images=args.stripes, classes=4, contrast=6.0)
    with tempfile.TemporaryDirectory() as folder:
        stripe_features = embed_images(
            refs_for(stripes), backbone=args.backbone, cache=FeatureCache(folder)
        )
    sklearn_agreement(stripe_features, one_hot(stripes, 4), "faint texture (±6/255), 4 tags")
    print(f"load average at the end: {os.getloadavg()}")


def memory_child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    items = photo_classes(DATA, images=args.memory, classes=args.classes)
    refs = refs_for(items)
    targets = one_hot(items, args.classes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as folder:
        wall, cpu, metrics = start_to_metrics(refs, targets, FeatureCache(folder), args.backbone)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"| {args.memory} images, cold | {wall:.0f} s wall, {cpu:.0f} s CPU | "
        f"peak RSS {peak / 1024:.0f} MiB (before training, imports + hashing: "
        f"{before / 1024:.0f} MiB) | "
        f"mAP {metrics['map']:.3f} | goal <= 3072 MiB |"
    )


def _lrcv_predictions(
    features: np.ndarray, labels: np.ndarray, outer: np.ndarray
) -> tuple[np.ndarray, list[str], float]:
    """Held-out predictions of StandardScaler + scikit-learn's LogisticRegressionCV with its
    defaults (10 C values 1e-4..1e4, stratified 5-fold inner CV scored by accuracy, lbfgs;
    max_iter 1000 instead of 100 so the large C values converge), fitted on each outer-training
    part; the C it chose per outer fold; seconds per outer fold."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predictions = np.zeros(len(labels), dtype=np.int64)
    chosen = []
    started = time.process_time()
    for fold in np.unique(outer):
        train = outer != fold
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(max_iter=1000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)
            model.fit(features[train], labels[train])
        predictions[~train] = model.predict(features[~train])
        chosen.append(f"{float(model[-1].C_[0]):.2g}")
    return predictions, chosen, (time.process_time() - started) / len(np.unique(outer))


@dataclass(frozen=True)
class _QuickRun:
    predictions: np.ndarray  # (N,) held-out class of each image
    kfold_accuracy: list[float]  # per outer fold, quick training's own k-fold (OOF) accuracy
    seconds: float  # CPU seconds of one train_quick, averaged over the outer folds
    chosen: list[str]  # the final head's setting per outer fold ("b": class-weighted)


def _quick_predictions(
    features: np.ndarray, labels: np.ndarray, outer: np.ndarray, c: float | None
) -> _QuickRun:
    """Held-out predictions of quick training's final head, trained on each outer-training
    part with its own k-fold inside."""
    targets = np.eye(int(labels.max()) + 1, dtype=np.float32)[labels]
    predictions = np.zeros(len(labels), dtype=np.int64)
    seconds, chosen, kfold = 0.0, [], []
    for fold in np.unique(outer):
        train = outer != fold
        started = time.process_time()
        result = train_quick(features[train], targets[train], multilabel=False, seed=0, c=c)
        seconds += time.process_time() - started
        predictions[~train] = result.head.probabilities(features[~train]).argmax(axis=1)
        kfold.append(float((result.oof_scores.argmax(axis=1) == labels[train]).mean()))
        final = result.selection.final
        chosen.append(f"{final.c:g}{'b' if final.balanced else ''}")
    return _QuickRun(predictions, kfold, seconds / len(np.unique(outer)), chosen)


def _picked_per_project(runs: dict[str, _QuickRun], outer: np.ndarray) -> tuple[np.ndarray, str]:
    """Predictions when quick training picks, in each outer fold, the feature set with the best
    k-fold accuracy of its own (ties: the first, the default): only outer-training labels
    decide, so the held-out accuracy stays honest."""
    names = list(runs)
    predictions = np.zeros(len(outer), dtype=np.int64)
    picks = []
    for index, fold in enumerate(np.unique(outer)):
        best = max(names, key=lambda name: (runs[name].kfold_accuracy[index], -names.index(name)))
        predictions[outer == fold] = runs[best].predictions[outer == fold]
        picks.append(best)
    return predictions, ", ".join(picks)


def probe(args: argparse.Namespace) -> None:
    """Quick training vs LogisticRegressionCV on each candidate feature set, six small sets."""
    from threadpoolctl import threadpool_limits

    from bench.feature_sets import FEATURE_SETS, all_sets, features

    torch.set_num_threads(args.threads)
    names = args.feature_sets.split(",") if args.feature_sets else list(FEATURE_SETS)
    sets = all_sets()
    wanted = [int(index) for index in args.sets.split(",")] if args.sets else range(len(sets))
    for labelled in (sets[index] for index in wanted):  # embed first: the rows come together
        for name in names:
            features(labelled, name)
    print(
        f"\nheld-out accuracy (%) over {args.outer} outer folds; in brackets the C chosen per "
        "outer fold; CPU s per fit of the outer-training part"
    )
    print(
        "| dataset | images | feature set | LogisticRegressionCV | quick, C = 1 | "
        "quick, inner CV | quick - LRCV (pts) | s: LRCV / quick C = 1 / quick |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    # Multithreaded OpenBLAS on this 2-core host at load 13-21 left LogisticRegressionCV at ~6%
    # of a core (threads waiting on each other), so no row came in 25 minutes: one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        for labelled in (sets[index] for index in wanted):
            labels = labelled.labels
            targets = np.eye(int(labels.max()) + 1, dtype=np.float32)[labels]
            outer = stratified_folds(targets, args.outer, seed=1)
            sk_acc, runs = {}, {}
            for name in names:
                x = features(labelled, name)
                sk, sk_chosen, sk_s = _lrcv_predictions(x, labels, outer)
                fixed = _quick_predictions(x, labels, outer, c=1.0)
                inner = runs[name] = _quick_predictions(x, labels, outer, c=None)
                sk_acc[name] = float((sk == labels).mean())
                fixed_acc = float((fixed.predictions == labels).mean())
                inner_acc = float((inner.predictions == labels).mean())
                print(
                    f"| {labelled.name} | {len(labels)} | {name} | {sk_acc[name] * 100:.1f} "
                    f"({', '.join(sk_chosen)}) | {fixed_acc * 100:.1f} | {inner_acc * 100:.1f} "
                    f"({', '.join(inner.chosen)}) | {(inner_acc - sk_acc[name]) * 100:+.1f} | "
                    f"{sk_s:.1f} / {fixed.seconds:.2f} / {inner.seconds:.2f} |",
                    flush=True,
                )
            picked, picks = _picked_per_project(runs, outer)
            quick_acc = {
                name: float((run.predictions == labels).mean()) for name, run in runs.items()
            }
            summary.append(
                (labelled.name, sk_acc, quick_acc, float((picked == labels).mean()), picks)
            )
    print(
        "\n| dataset | best LRCV (feature set) | quick, default features | best quick "
        "(feature set) | quick picking per project (its picks) | best quick - best LRCV |"
    )
    print("|---|---|---|---|---|---|")
    default = names[0]
    for name, sk_acc, quick_acc, picked_acc, picks in summary:
        best_sk = max(sk_acc, key=lambda n: sk_acc[n])
        best_quick = max(quick_acc, key=lambda n: quick_acc[n])
        print(
            f"| {name} | {sk_acc[best_sk] * 100:.1f} ({best_sk}) | "
            f"{quick_acc[default] * 100:.1f} | {quick_acc[best_quick] * 100:.1f} ({best_quick}) | "
            f"{picked_acc * 100:.1f} ({picks}) | "
            f"{(quick_acc[best_quick] - sk_acc[best_sk]) * 100:+.1f} |"
        )
    print(f"load average at the end: {os.getloadavg()}")


def levels_weights(args: argparse.Namespace) -> None:
    """Quick training's held-out accuracy on a `-levels` feature set for each weight of the
    blocks' part (training.ml.embedding_parts.LEVELS_WEIGHT), same outer folds as --probe."""
    from threadpoolctl import threadpool_limits

    from bench.feature_sets import all_sets, features
    from training.ml import embedding_parts

    weights = [float(value) for value in args.levels_weights.split(",")]
    names = args.feature_sets.split(",") if args.feature_sets else ["lite0-levels"]
    sets = all_sets()
    wanted = [int(index) for index in args.sets.split(",")] if args.sets else range(len(sets))
    print(
        "| dataset | feature set | "
        + " | ".join(f"weight {weight:g}" for weight in weights)
        + " |\n|---|---|"
        + "---|" * len(weights)
    )
    kept = embedding_parts.LEVELS_WEIGHT
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for labelled in (sets[index] for index in wanted):
                labels = labelled.labels
                targets = np.eye(int(labels.max()) + 1, dtype=np.float32)[labels]
                outer = stratified_folds(targets, args.outer, seed=1)
                for name in names:
                    x = features(labelled, name)
                    row = []
                    for weight in weights:
                        embedding_parts.LEVELS_WEIGHT = weight
                        run = _quick_predictions(x, labels, outer, c=None)
                        row.append(f"{float((run.predictions == labels).mean()) * 100:.1f}")
                    print(f"| {labelled.name} | {name} | {' | '.join(row)} |", flush=True)
    finally:
        embedding_parts.LEVELS_WEIGHT = kept


def time_breakdown(args: argparse.Namespace) -> None:
    """Start-to-metrics before (fixed C = 1) and after (inner CV) on the photo set of
    bench/al_data.py: embedding (fresh feature cache, lite0) is shared, the head is timed both
    ways, alternately `--repeats` times (median); "20% new" embeds only a fifth of the images,
    the rest being cached, as a retrain after an upload does."""
    from bench.al_data import photo_set

    torch.set_num_threads(args.threads)
    labelled = photo_set(per_class=args.per_class)
    refs, labels = labelled.refs, labelled.labels
    targets = np.eye(int(labels.max()) + 1, dtype=np.float32)[labels]
    stock_engine(args.backbone)
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        old = int(len(refs) * 0.8)
        started = time.process_time()
        embed_images(refs[:old], backbone=args.backbone, cache=cache)
        embed_old = time.process_time() - started
        started = time.process_time()
        features = embed_images(refs, backbone=args.backbone, cache=cache)
        embed_new = time.process_time() - started
    heads: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.repeats):
        for name, c in (("before", 1.0), ("after", None)):
            started = time.process_time()
            result = train_quick(features, targets, multilabel=False, seed=0, c=c)
            classification_metrics(targets, result.oof_scores, multiclass=True)
            heads[name].append(time.process_time() - started)
    before, after = float(np.median(heads["before"])), float(np.median(heads["after"]))
    cold, warm = embed_old + embed_new, embed_new
    print(
        f"\nphotos, {len(refs)} images, {args.backbone}, CPU seconds (head: median of "
        f"{args.repeats}); before = C fixed at 1, after = inner CV"
    )
    print("| part | before | after | after / before |\n|---|---|---|---|")
    print(f"| head: k-fold + final + metrics | {before:.2f} | {after:.2f} | {after / before:.2f} |")
    for name, embed in (("cold (empty cache)", cold), (f"{len(refs) - old} new images", warm)):
        print(
            f"| start to metrics, {name} | {embed + before:.1f} | {embed + after:.1f} | "
            f"{(embed + after) / (embed + before):.2f} |"
        )
    print(f"load average at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--new", type=int, default=50)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--stripes", type=int, default=400)
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", type=int, default=0, help="measure peak RSS on N images")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--probe", action="store_true", help="quick training vs LogisticRegressionCV, six sets"
    )
    parser.add_argument("--feature-sets", default="", help="comma-separated, default: all")
    parser.add_argument("--sets", default="", help="comma-separated set indices, default: all")
    parser.add_argument("--outer", type=int, default=5, help="outer folds of the probe")
    parser.add_argument(
        "--probe-time", action="store_true", help="head time before/after the inner CV"
    )
    parser.add_argument(
        "--levels-weights",
        default="",
        help="comma-separated weights of a -levels embedding's blocks to compare, e.g. 1,3,6",
    )
    parser.add_argument("--per-class", type=int, default=25, help="--probe-time's photos")
    parser.add_argument("--repeats", type=int, default=3, help="--probe-time's head timings")
    args = parser.parse_args()
    if args.levels_weights:
        levels_weights(args)
    elif args.probe:
        probe(args)
    elif args.probe_time:
        time_breakdown(args)
    elif args.memory and args.child:
        memory_child(args)
    elif args.memory:
        photo_classes(DATA, images=args.memory, classes=args.classes)  # generate files first
        # A fresh process, so the peak is the training's own, not this script's history.
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child"], check=True)
    else:
        timings(args)


if __name__ == "__main__":
    main()
