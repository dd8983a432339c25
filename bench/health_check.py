"""Health check at 20,000 images: the worker's own function, timed end to end.

    .venv/bin/python bench/health_check.py [--images 20000] [--runs 3] [--no-write]

In a throwaway SQLite database: a multiclass project of `--images` images (10 tags with falling
sizes, 2% untagged, 1% under 256 px, a few panoramas), a completed iteration with 5 folds over
all of them, and a detection project of the same size with ~2 boxes an image. Synthetic 1,280-d
embeddings (with 100 planted near-duplicate pairs) are written to the FeatureCache the worker
reads. Timed: `training.services.health.run_health_check(project_id)`, what the
`training.check_health` task calls: DB reads, 20,000 cached embedding files, every rule,
storing the report. Goal: under 10 s. Side by side, the near-duplicate search the check uses
(128-d projected candidates, confirmed on full vectors) against an exact all-pairs search on the
full vectors, on a 5,000-image subset.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.active_learning import setup_django  # noqa: E402
from bench.common import append_result, command_line, machine_line  # noqa: E402

GOAL_S = 10.0
DUPLICATE_PAIRS = 100


def _embeddings(n: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((n, 1280)).astype(np.float32)
    copies = rng.choice(n, size=2 * DUPLICATE_PAIRS, replace=False)
    for a, b in copies.reshape(-1, 2):
        vectors[b] = vectors[a] + 0.05 * rng.standard_normal(1280).astype(np.float32)
    return vectors


def build(kind: str, n: int, seed: int) -> int:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from labeling.models import Image, ImageTag, Project, Region, Tag
    from training.ml.features import FeatureCache
    from training.models import HealthReport, Iteration, IterationImage, IterationScore
    from training.services.iterations import backbone_for

    rng = np.random.default_rng(seed)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = Project.objects.create(name=f"health {kind}", kind=kind, owner=user)
    tags = [Tag.objects.create(project=project, name=f"tag{i}") for i in range(10)]
    widths = rng.integers(300, 1600, n)
    heights = rng.integers(300, 1200, n)
    small = rng.random(n) < 0.01
    widths[small] = 200
    heights[rng.random(n) < 0.001] = 30  # a few panoramas
    hashes = [f"{seed:02d}{kind[:2]}{i:060d}" for i in range(n)]
    Image.objects.bulk_create(
        [
            Image(
                project=project,
                file=f"images/bench{i}.jpg",
                sha256=hashes[i],
                format="JPEG",
                size_bytes=1000,
                width=int(widths[i]),
                height=int(heights[i]),
                is_tagged=True,
            )
            for i in range(n)
        ],
        batch_size=2000,
    )
    ids = list(project.images.order_by("pk").values_list("pk", flat=True))
    weights = np.linspace(1.0, 0.2, len(tags))
    tag_of = rng.choice(len(tags), size=n, p=weights / weights.sum())
    labeled = rng.random(n) >= 0.02
    if kind == "detection":
        boxes = []
        for i in np.flatnonzero(labeled):
            for _ in range(int(rng.integers(1, 4))):
                w, h = rng.uniform(0.05, 0.5, 2)
                left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                boxes.append(
                    Region(
                        image_id=ids[i], tag=tags[tag_of[i]], left=left, top=top, width=w, height=h
                    )
                )
        Region.objects.bulk_create(boxes, batch_size=5000)
    else:
        ImageTag.objects.bulk_create(
            [ImageTag(image_id=ids[i], tag=tags[tag_of[i]]) for i in np.flatnonzero(labeled)],
            batch_size=5000,
        )
        iteration = Iteration.objects.create(
            project=project, number=1, name="Iteration 1", status="completed", backbone="lite0"
        )
        rows = IterationImage.objects.bulk_create(
            [
                IterationImage(iteration=iteration, image_id=ids[i], sha256=hashes[i])
                for i in np.flatnonzero(labeled)
            ],
            batch_size=5000,
        )
        IterationScore.objects.bulk_create(
            [
                IterationScore(iteration=iteration, iteration_image=row, fold=k % 5)
                for k, row in enumerate(rows)
            ],
            batch_size=5000,
        )
    cache = FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR)
    vectors = _embeddings(n, rng)
    cache.put_many(dict(zip(hashes, vectors, strict=True)), backbone_for(project))
    HealthReport.objects.create(project=project)
    return project.pk


def time_check(project_id: int, runs: int) -> tuple[list[float], dict[str, str]]:
    from training.models import HealthReport
    from training.services.health import run_health_check

    times = []
    for _ in range(runs):
        HealthReport.objects.filter(project_id=project_id).update(status="queued")
        started = time.perf_counter()
        run_health_check(project_id)
        times.append(time.perf_counter() - started)
    report = HealthReport.objects.get(project_id=project_id)
    assert report.status == "done", report.failure_message
    return times, {r["key"]: r["status"] for r in report.results}


def side_by_side(n: int) -> tuple[float, float, bool]:
    from training.ml.duplicates import DUPLICATE_SIMILARITY, near_duplicate_pairs

    vectors = _embeddings(n, np.random.default_rng(7))
    started = time.perf_counter()
    pairs, _ = near_duplicate_pairs(vectors)
    fast = time.perf_counter() - started
    started = time.perf_counter()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = set()
    for start in range(0, n, 1024):
        sims = unit[start : start + 1024] @ unit.T
        for i, j in zip(*np.nonzero(sims >= DUPLICATE_SIMILARITY), strict=True):
            if start + i < j:
                exact.add((int(start + i), int(j)))
    slow = time.perf_counter() - started
    return fast, slow, exact == {(int(a), int(b)) for a, b in pairs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="loupe-health-bench-"))
    setup_django(data_dir)
    lines = [
        "| project | images | median s | runs (s) | goal 10 s | rule results |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("multiclass", "detection"):
        started = time.perf_counter()
        project_id = build(kind, args.images, seed=1 if kind == "multiclass" else 2)
        print(f"{kind}: built in {time.perf_counter() - started:.0f} s", flush=True)
        times, statuses = time_check(project_id, args.runs)
        median = statistics.median(times)
        flagged = ", ".join(f"{k} {v}" for k, v in statuses.items() if v != "pass")
        line = (
            f"| {kind} | {args.images:,} | {median:.2f} | "
            f"{' / '.join(f'{t:.2f}' for t in times)} | {median / GOAL_S:.2f} of it | {flagged} |"
        )
        print(line, flush=True)
        lines.append(line)
    fast, slow, same = side_by_side(5_000)
    lines += [
        "",
        f"Near-duplicate search at 5,000 images: projected candidates + confirmation {fast:.2f} s "
        f"vs exact all pairs on 1,280-d {slow:.2f} s ({slow / fast:.1f}x faster); "
        f"same pairs: {same}.",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        append_result(
            "Issue 13: health check (bench/health_check.py)",
            f"`{command_line()}` on {machine_line()}. Timed: "
            "`training.services.health.run_health_check` (the `training.check_health` task's "
            "call: DB reads, cached embedding files, every rule, the stored report), "
            "embeddings already cached (synthetic, 100 planted near-duplicate pairs).\n\n" + table,
        )


if __name__ == "__main__":
    main()
