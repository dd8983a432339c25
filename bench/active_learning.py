"""Active-learning benchmark: are the Predictions tab's first picks worth more than random ones?

    .venv/bin/python bench/active_learning.py --dataset easy          # 5 seeds x 10 rounds of 20
    .venv/bin/python bench/active_learning.py --dataset hard --rounds 20
    .venv/bin/python bench/active_learning.py --dataset imbalanced
    .venv/bin/python bench/active_learning.py --dataset path/to/tags --test path/to/test_tags
    options: --strategies product,random,random-b,margin,balanced-margin,badge,typiclust
             --seeds N  --rounds N  --budget N
             --json PATH (curves, paired differences, labels needed)  --no-write (RESULTS.md)

Datasets (bench/al_data.py; nothing is downloaded): "easy" = augmented crops of ten scikit-image
photographs (a linear probe on lite0 features reaches ~98%); "hard" = ten digit classes drawn
onto crops of twenty photographs (frozen features mostly see the background); "imbalanced"
= the easy set with class sizes falling from 1 to 1/10; or any folder-per-tag DIR (`--test DIR`
for a held-out set; without it, a stratified 30% split per seed).

Per seed: 2 random labeled pool images per tag to start. Each round trains quick, exactly as the
worker does (training.ml.quick.train_quick on the compact domain's embedding, lite0-levels, from
training.ml.features: k-fold out-of-fold scores, then the final head), scores the test split
with the final head, and the strategy picks `budget` pool images whose labels are then
revealed. Every strategy sees the same seeds, splits and starting labels.

"product" is what a reviewer gets, through the service layer in a throwaway SQLite database: each
round records the iteration as a finished quick training leaves it (metrics from the out-of-fold
scores by classification_metrics, labels per tag, the training set's embeddings by
training.services.embeddings), stores the pool's predictions as the prediction API does (results
and uncertainty from predictions.services.predict.score_output, the embedding), and takes the
first page of predictions.services.ranking.ranked_predictions(sort="gain"): the Predictions tab's
own call (`first_page`; tests/predictions/test_ranking.py checks the tab shows the same order).
Ablations: "random"; "random-b" (a second random sampler with its own draws: its paired
difference from "random" is the noise floor of the protocol); "margin" (the least sure first);
"balanced-margin" (the least sure of each predicted class in turn); "badge" (BADGE: k-means++
over the head's gradient embeddings); "typiclust" (the product's rule with the weight held at
0: coverage only).

Detection (issue 14, item 4), measured in mAP@0.5 (pycocotools' COCOeval) on held-out images:

    .venv/bin/python bench/active_learning.py --dataset detection [--quick] [--seeds N]
        [--rounds N] [--budget N] [--det-images 160] [--det-test 50] [--det-start 10]
        [--det-budget-s 300] [--det-epochs 30]

bench/al_data.detection_set (object cut-outs pasted onto photographs, with their boxes). Each
round trains quick detection (training.ml.detection.train_detector, frozen lite0, a time budget,
one map store for every strategy so prepared images are reused), and "product" stores the pool's
predictions in a detection project as the prediction API stores them: boxes and mirror-image
boxes through score_output (uncertainty with the flip disagreement), the iteration's held-out
mAP as its metrics, its training embeddings; then takes the same `first_page`. Against "random".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.al_data import PhotoSet, folder_set, glyph_set, mosaic_set, photo_set  # noqa: E402
from training.ml.domains import BACKBONE_FOR_DOMAIN  # noqa: E402
from training.ml.features import FeatureCache, embed_images  # noqa: E402
from training.ml.metrics import classification_metrics  # noqa: E402
from training.ml.quick import QuickResult, train_quick  # noqa: E402
from training.ml.ranking import compact_embeddings, rank_for_review  # noqa: E402
from training.ml.uncertainty import classification_uncertainty  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "al"
# What a new project trains on (the compact domain's embedding), as a user's data would see it.
BACKBONE = BACKBONE_FOR_DOMAIN["general_compact"]


class Round:
    """What a strategy may look at: the model of this round and the pool's features."""

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        labeled: np.ndarray,
        unlabeled: np.ndarray,
        result: QuickResult,
        seed: int,
        number: int,
    ) -> None:
        self.features, self.labels = features, labels
        self.labeled, self.unlabeled = labeled, unlabeled
        self.result, self.seed, self.number = result, seed, number

    def pool_probabilities(self) -> np.ndarray:
        return self.result.head.probabilities(self.features[self.unlabeled])


# A strategy returns `budget` distinct positions into round.unlabeled.
Strategy = Callable[[Round, int], np.ndarray]


def random_pick(round_: Round, budget: int) -> np.ndarray:
    rng = np.random.default_rng(round_.seed * 1000 + round_.number)
    return rng.choice(round_.unlabeled.size, size=budget, replace=False)


def random_again(round_: Round, budget: int) -> np.ndarray:
    """A second random sampler with its own draws: the noise floor. Its paired difference from
    "random" is what sampling alone gives, the yardstick for every other strategy's."""
    rng = np.random.default_rng([round_.seed, round_.number, 2])
    return rng.choice(round_.unlabeled.size, size=budget, replace=False)


def margin(round_: Round, budget: int) -> np.ndarray:
    multilabel = round_.labels.ndim == 2
    scores = classification_uncertainty(round_.pool_probabilities(), multilabel=multilabel)
    return np.argsort(-scores, kind="stable")[:budget]


def badge(round_: Round, budget: int) -> np.ndarray:
    """BADGE (Ash et al., 2020): k-means++ seeding over the head's gradient embeddings
    ``(p - onehot(argmax p)) ⊗ x`` (x the compact embedding), the longest gradient first."""
    p = round_.pool_probabilities()
    x = compact_embeddings(round_.features[round_.unlabeled])
    guess = (p > 0.5).astype(np.float32)
    if round_.labels.ndim == 1:
        guess = np.eye(p.shape[1], dtype=np.float32)[p.argmax(axis=1)]
    g = ((p - guess)[:, :, None] * x[:, None, :]).reshape(p.shape[0], -1)
    rng = np.random.default_rng([round_.seed, round_.number, 3])
    sq_norms = np.einsum("ij,ij->i", g, g)
    chosen = [int(np.argmax(sq_norms))]
    closest = np.maximum(sq_norms - 2.0 * g @ g[chosen[0]] + sq_norms[chosen[0]], 0.0)
    while len(chosen) < budget:
        closest[chosen] = 0.0
        total = float(closest.sum())
        pick = (
            int(rng.integers(g.shape[0]))
            if total <= 1e-12
            else int(rng.choice(g.shape[0], p=closest / total))
        )
        if pick in chosen:
            continue
        chosen.append(pick)
        distance = np.maximum(sq_norms - 2.0 * g @ g[pick] + sq_norms[pick], 0.0)
        closest = np.minimum(closest, distance)
    return np.array(chosen, dtype=np.int64)


def balanced_margin(round_: Round, budget: int) -> np.ndarray:
    """Margin sampling balanced over the predicted classes: the least sure of each predicted
    class in turn (classes ordered by their least sure image)."""
    p = round_.pool_probabilities()
    scores = classification_uncertainty(p, multilabel=round_.labels.ndim == 2)
    by_class: dict[int, list[int]] = {}
    for i in np.argsort(-scores, kind="stable"):
        by_class.setdefault(int(p[i].argmax()), []).append(int(i))
    queues = sorted(by_class.values(), key=lambda members: -scores[members[0]])
    picks = [q[depth] for depth in range(budget) for q in queues if depth < len(q)]
    return np.array(picks[:budget], dtype=np.int64)


def typiclust(round_: Round, budget: int) -> np.ndarray:
    features = round_.features
    ranking = rank_for_review(
        features[round_.unlabeled],
        np.zeros(round_.unlabeled.size),
        labeled_embeddings=features[round_.labeled],
        weight=0.0,
        k=budget,
        seed=round_.number,
    )
    return ranking.order


# --- "product": the Predictions tab's ranking, through the service layer --------------------


def setup_django(data_dir: Path) -> None:
    """A throwaway SQLite database and media folder under `data_dir`, migrated."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(LOUPE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="project.settings")
    manage = [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"]
    subprocess.run(manage, env=env, check=True, cwd=BASE_DIR)
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()


class ProductLoop:
    """One project per seed: the pool as stored predictions, one iteration per round."""

    def __init__(self, data: PhotoSet, features: np.ndarray, pool: np.ndarray, seed: int) -> None:
        from django.contrib.auth import get_user_model

        from labeling.models import Image, Project, Tag
        from predictions.models import Prediction

        user, _ = get_user_model().objects.get_or_create(username="bench")
        self.multilabel = data.labels.ndim == 2
        kind = Project.Kind.MULTILABEL if self.multilabel else Project.Kind.MULTICLASS
        self.project = Project.objects.create(
            name=f"al {seed} {time.time_ns()}", kind=kind, owner=user
        )
        self.tags = [Tag.objects.create(project=self.project, name=n) for n in data.class_names]
        self.features = features
        images = Image.objects.bulk_create(
            Image(
                project=self.project,
                file=f"bench/{data.refs[i].key}.jpg",
                sha256=data.refs[i].key,
                format="JPEG",
                size_bytes=1,
                width=128,
                height=128,
                source=Image.Source.PREDICTION,
                is_training=False,
            )
            for i in pool
        )
        self.row_of_image = {image.pk: int(i) for image, i in zip(images, pool, strict=True)}
        self.predictions = {
            int(i): Prediction(
                project=self.project,
                iteration=None,
                image=image,
                embedding=features[i].astype("<f2").tobytes(),
            )
            for image, i in zip(images, pool, strict=True)
        }
        self.iteration_number = 0

    def record_iteration(self, round_: Round) -> Any:
        """The iteration row a finished quick training leaves, with its training embeddings."""
        from training.models import Iteration, IterationTag
        from training.services.embeddings import save_training_embeddings

        self.iteration_number += 1
        truth = targets(round_.labels[round_.labeled], len(self.tags)).astype(np.int64)
        metrics = classification_metrics(
            truth, round_.result.oof_scores, threshold=0.5, multiclass=not self.multilabel
        )
        iteration = Iteration.objects.create(
            project=self.project,
            number=self.iteration_number,
            name=f"Iteration {self.iteration_number}",
            status=Iteration.Status.COMPLETED,
            backbone=BACKBONE,
            is_multilabel=self.multilabel,
            image_count=int(round_.labeled.size),
            metrics=metrics,
            artifact=f"bench/{self.project.pk}/{self.iteration_number}/model.pt",
        )
        counts = truth.sum(axis=0)
        IterationTag.objects.bulk_create(
            IterationTag(
                iteration=iteration, tag=tag, name=tag.name, index=i, image_count=int(counts[i])
            )
            for i, tag in enumerate(self.tags)
        )
        save_training_embeddings(iteration.pk, round_.features[round_.labeled])
        return iteration

    def store_predictions(self, iteration: Any, round_: Round) -> None:
        """The unlabeled pool's predictions by this iteration, as the prediction API stores them
        (results and uncertainty by score_output; the tag sorts' score rows are not needed)."""
        from predictions.model_cache import ModelOutput
        from predictions.models import Prediction
        from predictions.services.predict import score_output, target_for

        target = target_for(self.project, iteration)
        probabilities = round_.pool_probabilities()
        rows = []
        for position, row in enumerate(round_.unlabeled):
            prediction = self.predictions[int(row)]
            output = ModelOutput(probabilities[position], [], self.features[row])
            outcome = score_output(target, output)
            top = outcome.results[0] if outcome.results else None
            prediction.iteration = iteration
            prediction.results = outcome.results
            prediction.uncertainty = outcome.uncertainty
            prediction.top_tag_id = top["tagId"] if top else None
            prediction.top_probability = top["probability"] if top else 0.0
            rows.append(prediction)
        fields = ["iteration", "results", "uncertainty", "top_tag", "top_probability"]
        if rows[0].pk is None:
            Prediction.objects.bulk_create(rows, batch_size=500)
        else:
            Prediction.objects.bulk_update(rows, fields, batch_size=500)

    def mark_labeled(self, rows: np.ndarray) -> None:
        from predictions.models import Prediction

        ids = [self.predictions[int(r)].pk for r in rows]
        Prediction.objects.filter(pk__in=ids).update(status=Prediction.Status.PROMOTED)

    def pick(self, round_: Round, budget: int) -> np.ndarray:
        iteration = self.record_iteration(round_)
        self.store_predictions(iteration, round_)
        image_ids = first_page(self.project, iteration.pk, budget)
        rows = [self.row_of_image[i] for i in image_ids]
        position = {int(r): p for p, r in enumerate(round_.unlabeled)}
        self.mark_labeled(np.array(rows))
        return np.array([position[r] for r in rows], dtype=np.int64)


def first_page(project: Any, iteration_id: int, size: int) -> list[int]:
    """Image ids of the first page of "Most gain": the Predictions tab's own call."""
    from predictions.services.ranking import ranked_predictions

    page = ranked_predictions(project=project, iteration_id=iteration_id, sort="gain", size=size)
    return [prediction.image_id for prediction in page.predictions]


# --- The protocol ------------------------------------------------------------------------------


def targets(labels: np.ndarray, tags: int) -> np.ndarray:
    """(N, T) float32 0/1 targets from class ids (N,) or a multilabel 0/1 matrix (N, T)."""
    if labels.ndim == 2:
        return labels.astype(np.float32)
    return np.eye(tags, dtype=np.float32)[labels]


def split(
    labels: np.ndarray, seed: int, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pool, test, starting labeled) indices for one seed, stratified by class (multilabel: by
    each image's first tag; the start then holds 2 images of every tag)."""
    rng = np.random.default_rng(seed)
    strata = labels.argmax(axis=1) if labels.ndim == 2 else labels
    pool: list[int] = []
    test: list[int] = []
    for label in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == label))
        cut = round(test_fraction * members.size)
        test.extend(members[:cut].tolist())
        pool.extend(members[cut:].tolist())
    pool_array = np.array(sorted(pool))
    start: list[int] = []
    columns = targets(labels, int(labels.max()) + 1 if labels.ndim == 1 else labels.shape[1])
    for tag in range(columns.shape[1]):
        having = [int(i) for i in rng.permutation(pool_array) if columns[i, tag] and i not in start]
        start.extend(having[:2])
    return pool_array, np.array(sorted(test)), np.array(start)


def score(result: QuickResult, features: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (multiclass) or macro average precision (multilabel) on the test split."""
    probabilities = result.head.probabilities(features)
    if labels.ndim == 2:
        figures = classification_metrics(labels, probabilities, threshold=0.5, multiclass=False)
        return float(figures["map"])
    return float((probabilities.argmax(axis=1) == labels).mean())


def run_seed(
    data: PhotoSet,
    features: np.ndarray,
    name: str,
    seed: int,
    args: argparse.Namespace,
    fixed_test: np.ndarray | None,
) -> tuple[list[int], list[float]]:
    labels = data.labels
    multilabel = labels.ndim == 2
    if fixed_test is None:
        pool, test, labeled = split(labels, seed, 0.3)
    else:  # the pool is the --dataset part only
        pool, _, labeled = split(labels[: fixed_test[0]], seed, 0.0)
        test = fixed_test
    tags = labels.shape[1] if multilabel else int(labels.max()) + 1
    strategy: Strategy = STRATEGIES.get(name) or ProductLoop(data, features, pool, seed).pick
    counts: list[int] = []
    accuracy: list[float] = []
    for number in range(args.rounds + 1):
        result = train_quick(
            features[labeled], targets(labels[labeled], tags), multilabel=multilabel, seed=seed
        )
        counts.append(int(labeled.size))
        accuracy.append(score(result, features[test], labels[test]))
        if number == args.rounds:
            break
        unlabeled = np.setdiff1d(pool, labeled)
        round_ = Round(features, labels, labeled, unlabeled, result, seed, number)
        picks = strategy(round_, args.budget)
        assert len(set(picks.tolist())) == args.budget, f"{name} must pick distinct images"
        labeled = np.concatenate([labeled, unlabeled[picks]])
    return counts, accuracy


STRATEGIES: dict[str, Strategy] = {
    "random": random_pick,
    "random-b": random_again,
    "margin": margin,
    "balanced-margin": balanced_margin,
    "badge": badge,
    "typiclust": typiclust,
}


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


def load(dataset: str, per_class: int, test_dir: str | None) -> tuple[PhotoSet, int | None]:
    """The dataset and, with --test, where its held-out part starts."""
    if dataset == "easy":
        return photo_set(per_class=per_class), None
    if dataset == "imbalanced":
        data = photo_set(per_class=per_class)
        keep = imbalanced(data.labels, 10.0)
        return PhotoSet([data.refs[i] for i in keep], data.labels[keep], data.class_names), None
    if dataset == "hard":
        return glyph_set(per_class=per_class), None
    if dataset == "multilabel":
        return mosaic_set(count=10 * per_class), None
    data = folder_set(dataset)
    if test_dir is None:
        return data, None
    test = folder_set(test_dir)
    if test.class_names != data.class_names:
        raise SystemExit("--test must have the same tag folders as --dataset.")
    merged = PhotoSet(
        data.refs + test.refs, np.concatenate([data.labels, test.labels]), data.class_names
    )
    return merged, len(data.refs)


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


def embed(data: PhotoSet) -> np.ndarray:
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 300 == 0 or done == total:
            print(f"  embedded {done}/{total} ({time.perf_counter() - started:.0f} s)", flush=True)

    return embed_images(
        data.refs, backbone=BACKBONE, cache=FeatureCache(OUT / "features"), on_progress=progress
    )


def summary(results: dict[str, list[list[float]]], counts: list[int]) -> dict[str, Any]:
    """Per strategy: mean/std per label count, paired difference from random, labels needed."""
    random_mean = np.mean(results["random"], axis=0) if "random" in results else None
    target = float(random_mean[-1]) if random_mean is not None else None
    random_needs = labels_to_reach(counts, random_mean, target) if target is not None else None
    out: dict[str, Any] = {"counts": counts, "random_final": target, "strategies": {}}
    for name, runs in results.items():
        curves = np.asarray(runs)
        entry: dict[str, Any] = {
            "mean": curves.mean(axis=0).tolist(),
            "std": curves.std(axis=0).tolist(),
        }
        if random_mean is not None and target is not None:
            paired = (curves - np.asarray(results["random"])).mean(axis=0)
            needed = labels_to_reach(counts, curves.mean(axis=0), target)
            entry.update(
                paired_vs_random=paired.tolist(),
                worst_paired_vs_random=float(paired.min()),
                labels_needed=needed,
                share_of_random=None
                if needed is None or not random_needs
                else needed / random_needs,
            )
        out["strategies"][name] = entry
    return out


def markdown(figures: dict[str, Any], data: PhotoSet, args: argparse.Namespace, cmd: str) -> str:
    names = list(figures["strategies"])
    counts = figures["counts"]
    rows = ["| labels | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, count in enumerate(counts):
        cells = []
        for name in names:
            entry = figures["strategies"][name]
            cell = f"{100 * entry['mean'][i]:.1f} ± {100 * entry['std'][i]:.1f}"
            if name != "random" and "paired_vs_random" in entry and i > 0:
                cell += f" ({100 * entry['paired_vs_random'][i]:+.1f})"
            cells.append(cell)
        rows.append(f"| {count} | " + " | ".join(cells) + " |")
    lines = []
    for name in names:
        entry = figures["strategies"][name]
        if "labels_needed" not in entry:
            continue
        needed = entry["labels_needed"]
        text = "not reached" if needed is None else f"{needed:.0f} labels"
        if entry["share_of_random"] is not None:
            text += f" ({100 * entry['share_of_random']:.0f}% of random's)"
        text += f"; worst paired round vs random {100 * entry['worst_paired_vs_random']:+.1f} pts"
        lines.append(f"- {name}: {text}")
    multilabel = data.labels.ndim == 2
    sizes = data.labels.sum(axis=0) if multilabel else np.bincount(data.labels)
    measure = "macro AP (%)" if multilabel else "accuracy (%)"
    return "\n".join(
        [
            f"Command: `{cmd}`",
            "",
            f"Data: {args.dataset}, {len(data.refs)} images, {sizes.size} tags of "
            f"{sizes.min()}-{sizes.max()} images; {BACKBONE} features; start 2 labels per tag, "
            f"{args.rounds} rounds of {args.budget}, {args.seeds} seeds. Test {measure} of "
            "quick training's final head, mean ± std over seeds (paired difference from random "
            "in brackets):",
            "",
            *rows,
            "",
            f"Labels needed to reach random's final mean ({100 * figures['random_final']:.1f}%):"
            if figures["random_final"] is not None
            else "",
            *lines,
        ]
    )


# --- Detection (issue 14, item 4): mAP@0.5 by pycocotools, product against random -------------


class DetectionSet:
    """bench/al_data.detection_set decoded once: pictures, boxes, and the stock lite0 embedding
    the prediction path stores for a detection (predictions.model_cache.LoadedModel.run)."""

    def __init__(self, count: int, seed: int = 0) -> None:
        from PIL import Image

        from bench.al_data import detection_set
        from training.ml.features import embed_pil, stock_engine

        samples = detection_set(OUT / f"detection-{count}-{seed}", count=count, seed=seed)
        self.paths = [s.path for s in samples]
        self.boxes = [list(s.boxes) for s in samples]
        self.pictures = []
        for path in self.paths:
            with Image.open(path) as image:
                self.pictures.append(image.convert("RGB"))
        self.embeddings = embed_pil(stock_engine(BACKBONE), self.pictures, BACKBONE)

    def ref(self, row: int) -> Any:
        from training.ml.data import ImageRef

        path = self.paths[int(row)]
        return ImageRef(key=f"al-det-{path.parent.name}-{path.stem}", open=lambda: path.open("rb"))


def detection_map50(data: DetectionSet, rows: Any, found: list[list[tuple]]) -> float:
    """mAP@0.5 by pycocotools' COCOeval over `rows` with these detections."""
    from bench.coco_map import coco_map
    from bench.detection_data import HEIGHT_PX, TAGS, WIDTH_PX

    truths = [data.boxes[int(row)] for row in rows]
    if not any(len(boxes) for boxes in truths):
        return 0.0
    _, map_50 = coco_map([(WIDTH_PX, HEIGHT_PX)] * len(truths), truths, found, TAGS)
    return max(map_50, 0.0)  # -1 when no category has a ground-truth box


def detect_all(predictor: Any, data: DetectionSet, rows: Any, *, mirror: bool = False) -> Any:
    """Per row the detector's boxes (and, with `mirror`, the mirror image's, in the same batch
    as LoadedModel.run(mirror=True) runs them)."""
    from PIL import ImageOps

    found, mirrored = [], []
    for row in rows:
        picture = data.pictures[int(row)]
        batch = [picture, ImageOps.mirror(picture)] if mirror else [picture]
        out = predictor.predict(batch)
        found.append([tuple(b) for b in out[0]])
        mirrored.append([tuple(b) for b in out[1]] if mirror else None)
    return found, mirrored


class DetectionProductLoop:
    """The detection pool as stored predictions of a detection project, one iteration a round:
    the boxes and their mirror-image boxes scored by predictions.services.predict.score_output
    (uncertainty with the flip disagreement), ranked by the tab's own first page."""

    def __init__(self, data: DetectionSet, pool: np.ndarray, seed: int) -> None:
        from django.contrib.auth import get_user_model

        from bench.detection_data import TAGS
        from labeling.models import Image, Project, Tag
        from predictions.models import Prediction

        user, _ = get_user_model().objects.get_or_create(username="bench")
        self.data = data
        self.project = Project.objects.create(
            name=f"al det {seed} {time.time_ns()}", kind=Project.Kind.DETECTION, owner=user
        )
        self.tags = [Tag.objects.create(project=self.project, name=n) for n in TAGS]
        images = Image.objects.bulk_create(
            Image(
                project=self.project,
                file=f"bench/det-{seed}-{i}.jpg",
                sha256=f"det-{seed}-{i}",
                format="JPEG",
                size_bytes=1,
                width=640,
                height=480,
                source=Image.Source.PREDICTION,
                is_training=False,
            )
            for i in pool
        )
        self.row_of_image = {image.pk: int(i) for image, i in zip(images, pool, strict=True)}
        self.predictions = {
            int(i): Prediction(
                project=self.project,
                iteration=None,
                image=image,
                embedding=data.embeddings[i].astype("<f2").tobytes(),
            )
            for image, i in zip(images, pool, strict=True)
        }
        self.number = 0
        self.mirror_s = 0.0  # detector time over the pool, each image with its mirror image
        self.mirror_images = 0

    def pick(
        self, predictor: Any, holdout_map: float, labeled: np.ndarray, budget: int
    ) -> np.ndarray:
        from predictions.model_cache import ModelOutput
        from predictions.models import Prediction
        from predictions.services.predict import score_output, target_for
        from training.models import Iteration, IterationTag
        from training.services.embeddings import save_training_embeddings

        self.number += 1
        iteration = Iteration.objects.create(
            project=self.project,
            number=self.number,
            name=f"Iteration {self.number}",
            status=Iteration.Status.COMPLETED,
            backbone=BACKBONE,
            image_count=int(labeled.size),
            metrics={"map": holdout_map},
            artifact=f"bench/{self.project.pk}/{self.number}/model.pt",
        )
        per_tag = np.zeros(len(self.tags), dtype=np.int64)
        for row in labeled:
            for tag in {int(b[0]) for b in self.data.boxes[int(row)]}:
                per_tag[tag] += 1
        IterationTag.objects.bulk_create(
            IterationTag(
                iteration=iteration, tag=tag, name=tag.name, index=i, image_count=int(per_tag[i])
            )
            for i, tag in enumerate(self.tags)
        )
        save_training_embeddings(iteration.pk, self.data.embeddings[labeled])
        target = target_for(self.project, iteration)
        # The pool's unlabeled images: the starting labels are training data, never predictions.
        done = {int(r) for r in labeled}
        open_rows = [r for r in self.predictions if r not in done]
        started = time.perf_counter()
        found, mirrored = detect_all(predictor, self.data, open_rows, mirror=True)
        self.mirror_s += time.perf_counter() - started
        self.mirror_images += len(open_rows)
        rows = []
        for row, boxes, flipped in zip(open_rows, found, mirrored, strict=True):
            best = np.zeros(len(self.tags), dtype=np.float32)
            for box in boxes:
                best[int(box[0])] = max(best[int(box[0])], float(box[1]))
            output = ModelOutput(best, boxes, self.data.embeddings[row], flipped)
            outcome = score_output(target, output)
            prediction = self.predictions[row]
            top = outcome.results[0] if outcome.results else None
            prediction.iteration = iteration
            prediction.results = outcome.results
            prediction.uncertainty = outcome.uncertainty
            prediction.flip_disagreement = outcome.flip_disagreement
            prediction.top_tag_id = top["tagId"] if top else None
            prediction.top_probability = top["probability"] if top else 0.0
            rows.append(prediction)
        fields = [
            "iteration",
            "results",
            "uncertainty",
            "flip_disagreement",
            "top_tag",
            "top_probability",
        ]
        if rows[0].pk is None:
            Prediction.objects.bulk_create(rows, batch_size=500)
        else:
            Prediction.objects.bulk_update(rows, fields, batch_size=500)
        picked = [self.row_of_image[i] for i in first_page(self.project, iteration.pk, budget)]
        for row in picked:
            self.predictions[row].status = Prediction.Status.PROMOTED
        Prediction.objects.filter(pk__in=[self.predictions[r].pk for r in picked]).update(
            status=Prediction.Status.PROMOTED
        )
        return np.array(picked, dtype=np.int64)


def run_detection_seed(
    data: DetectionSet, name: str, seed: int, args: argparse.Namespace, maps: Path
) -> tuple[list[int], list[float], tuple[float, int, float, int]]:
    """(labels counts, test mAP@0.5 per round, detector timing) of one strategy; the timing is
    (seconds, images) without the mirror image (the test set) and with it (product's pool)."""
    from bench.detection_data import TAGS
    from training.ml.detection import (
        DetectorConfig,
        DetectorPredictor,
        TrainOptions,
        train_detector,
    )
    from training.ml.detection.prepare import MapStore

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.paths))
    test = np.sort(order[: args.det_test])
    pool = np.sort(order[args.det_test :])
    # Quick detection training holds some labeled images out and needs boxes on 5 or more.
    with_boxes = np.array([r for r in pool if data.boxes[int(r)]])
    labeled = np.sort(rng.choice(with_boxes, size=args.det_start, replace=False))
    store = MapStore(maps, backbone=BACKBONE, config=DetectorConfig(), max_bytes=2 * 1024**3)
    loop = DetectionProductLoop(data, pool, seed) if name == "product" else None
    counts: list[int] = []
    scores: list[float] = []
    plain_s, plain_images = 0.0, 0
    for number in range(args.rounds + 1):
        result = train_detector(
            [data.ref(r) for r in labeled],
            [data.boxes[int(r)] for r in labeled],
            num_tags=len(TAGS),
            backbone=BACKBONE,
            budget_s=args.det_budget_s,
            seed=seed,
            map_store=store,
            # 0.3 rather than the default 0.2: a stratum of 2 images then gives one to the
            # held-out side, which a dozen labels over 5 tags needs (0.2 rounds it to none).
            # One plain view an image, no augmented ones: on this busy 2-core machine their
            # preparation would eat the round's budget (the product's default is 3).
            # A fixed number of epochs, the budget only a cap: rounds then train alike whatever
            # the machine's load (a time budget on a busy machine trains some rounds far less).
            options=TrainOptions(holdout_fraction=0.3, cached_views=1, max_epochs=args.det_epochs),
        )
        predictor = DetectorPredictor(result.to_artifact(backbone=BACKBONE, num_tags=len(TAGS)))
        started = time.perf_counter()
        found, _ = detect_all(predictor, data, test)
        plain_s += time.perf_counter() - started
        plain_images += len(test)
        counts.append(int(labeled.size))
        scores.append(detection_map50(data, test, found))
        objects = sum(len(data.boxes[int(r)]) for r in labeled)
        print(
            f"  {name} seed {seed} round {number}: {labeled.size} labels ({objects} boxes),"
            f" {result.epochs} epochs,"
            f" {sum(result.timings.get(k, 0.0) for k in ('preparing_s', 'training_s')):.0f} s,"
            f" test mAP@0.5 {100 * scores[-1]:.1f}",
            flush=True,
        )
        if number == args.rounds:
            break
        if loop is not None:
            held = [labeled[i] for i in result.holdout_index]
            holdout = detection_map50(data, held, result.holdout_detections) if held else 0.0
            picked = loop.pick(predictor, holdout, labeled, args.budget)
        else:
            unlabeled = np.setdiff1d(pool, labeled)
            picked = rng.choice(unlabeled, size=args.budget, replace=False)
        assert len(set(picked.tolist())) == args.budget and not set(picked) & set(labeled)
        labeled = np.sort(np.concatenate([labeled, picked]))
    timing = (
        plain_s,
        plain_images,
        loop.mirror_s if loop else 0.0,
        loop.mirror_images if loop else 0,
    )
    return counts, scores, timing


def main_detection(args: argparse.Namespace) -> None:
    """`--dataset detection`: product against random in mAP@0.5 (see the module docstring)."""
    from bench.common import append_result, command_line

    names = args.strategies.split(",")
    unknown = [n for n in names if n not in ("product", "random")]
    if unknown:
        raise SystemExit(f"Detection runs product and random only; not {', '.join(unknown)}.")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = DetectionSet(args.det_images)
    print(f"{len(data.paths)} images decoded and embedded ({time.perf_counter() - started:.0f} s)")
    results: dict[str, list[list[float]]] = {}
    counts: list[int] = []
    timing = np.zeros(4)
    with tempfile.TemporaryDirectory(prefix="loupe-al-det-") as data_dir:
        setup_django(Path(data_dir))
        maps = Path(data_dir) / "maps"  # one map store: every strategy reuses prepared images
        for name in names:
            started = time.perf_counter()
            runs = [run_detection_seed(data, name, seed, args, maps) for seed in range(args.seeds)]
            counts = runs[0][0]
            results[name] = [scores for _, scores, _ in runs]
            timing += np.sum([t for _, _, t in runs], axis=0)
            mean = np.mean(results[name], axis=0)
            print(
                f"{name:>10}: " + " ".join(f"{100 * v:.1f}" for v in mean),
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    figures = summary(results, counts)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    plain_ms = 1000 * timing[0] / max(timing[1], 1)
    mirror_ms = 1000 * timing[2] / max(timing[3], 1)
    text = detection_markdown(figures, args, command_line(), len(data.paths), plain_ms, mirror_ms)
    print(text)
    if not args.no_write and {"random", "product"} <= set(results):
        append_result("Issue 14: Most gain that gains (active-learning benchmark)", text)


def detection_markdown(
    figures: dict[str, Any],
    args: argparse.Namespace,
    cmd: str,
    images: int,
    plain_ms: float,
    mirror_ms: float,
) -> str:
    counts = figures["counts"]
    lines = [
        "### Most gain for detection, mAP@0.5 (issue 14, item 4)",
        "",
        f"Command: `{cmd}`",
        "",
        f"Data: bench/al_data.detection_set, {images} generated 640x480 photographs with 0-3 "
        f"pasted objects of 5 tags; per seed {args.det_test} test images, the rest the pool; "
        f"{args.det_start} random labeled images to start, +{args.budget} a round, quick "
        f"detection training (train_detector, frozen lite0, {args.det_epochs} epochs a round, "
        f"one plain view an image); mAP@0.5 by pycocotools on the test images. "
        f"{args.seeds} seed(s). Load "
        f"average at the end: {os.getloadavg()[0]:.1f} on 2 cores (other work shares them); "
        f"Detector time an image in this run: {plain_ms:.0f} ms alone (test images), "
        f"{mirror_ms:.0f} ms with its mirror image in the same batch (product's pool), "
        f"x{mirror_ms / max(plain_ms, 1e-9):.2f}.",
        "",
        "| strategy | " + " | ".join(str(c) for c in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for name, row in figures["strategies"].items():
        mean = row["mean"]
        std = row["std"]
        cells = " | ".join(f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(mean, std, strict=True))
        lines.append(f"| {name} (mAP@0.5 %) | {cells} |")
    if "paired_vs_random" in figures.get("strategies", {}).get("product", {}):
        diff = figures["strategies"]["product"]["paired_vs_random"]
        lines.append(
            "| product - random (paired, points) | "
            + " | ".join(f"{100 * d:+.1f}" for d in diff)
            + " |"
        )
        needed = figures["strategies"]["product"].get("labels_needed")
        lines += [
            "",
            f"Labeled images product needs to reach random's final mAP@0.5 "
            f"({100 * figures['random_final']:.1f}): "
            + ("not reached" if needed is None else f"{needed:.0f} (random: {counts[-1]})")
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default="easy", help="easy, hard, imbalanced, multilabel or a DIR"
    )
    parser.add_argument("--test", default=None, help="held-out folder-per-tag DIR")
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--strategies", default="product,random,margin,typiclust")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    detection = parser.add_argument_group("--dataset detection")
    detection.add_argument("--det-images", type=int, default=160, help="generated images")
    detection.add_argument("--det-test", type=int, default=50, help="test images per seed")
    detection.add_argument("--det-start", type=int, default=10, help="labeled images to start")
    detection.add_argument("--det-budget-s", type=float, default=300.0, help="training cap")
    detection.add_argument("--det-epochs", type=int, default=30, help="epochs a round")
    detection.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (1 when two runs share the 2 cores: 2 each oversubscribe them)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="detection: 1 seed, 10 + 2 x 6 labels, 60 images"
    )
    args = parser.parse_args()
    if args.dataset == "detection":
        if args.quick:
            args.seeds, args.rounds, args.budget = 1, 2, 6
            args.det_images, args.det_test, args.det_start, args.det_budget_s = 60, 20, 10, 300.0
            args.det_epochs = 10
        if args.strategies == parser.get_default("strategies"):
            args.strategies = "product,random"
        main_detection(args)
        return
    names = args.strategies.split(",")
    unknown = [n for n in names if n != "product" and n not in STRATEGIES]
    if unknown:
        raise SystemExit(f"Unknown strategies: {', '.join(unknown)}.")
    torch.set_num_threads(2)
    data, test_start = load(args.dataset, args.per_class, args.test)
    features = embed(data)
    fixed_test = None if test_start is None else np.arange(test_start, len(data.refs))
    # The heads are small (<= 420 x 1,280): one thread avoids thread hand-off overhead.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="loupe-al-") as data_dir:
        if "product" in names:
            setup_django(Path(data_dir))
        results: dict[str, list[list[float]]] = {}
        counts: list[int] = []
        for name in names:
            started = time.perf_counter()
            runs = [
                run_seed(data, features, name, seed, args, fixed_test) for seed in range(args.seeds)
            ]
            counts = runs[0][0]
            results[name] = [accuracy for _, accuracy in runs]
            mean = np.mean(results[name], axis=0)
            print(
                f"{name:>10}: " + " ".join(f"{100 * v:.1f}" for v in mean),
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    figures = summary(results, counts)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    from bench.common import append_result, command_line

    text = markdown(figures, data, args, command_line())
    print(text)
    if not args.no_write and "random" in results and "product" in results:
        append_result("Issue 14: Most gain that gains (active-learning benchmark)", text)


if __name__ == "__main__":
    main()
