"""Prediction API throughput and the Predictions tab at 100,000 stored predictions (issue 5).

    .venv/bin/python bench/prediction_api.py [--requests 40] [--ranking-rows 100000]

What it does:
1. Fits a real classifier in this process: EfficientNet-Lite0's pretrained weights (224 px, the
   production engine) and a quick-training head on three colour classes.
2. Starts the whole stack as `make run` does (bench.common.LoupeServer: uvicorn, Celery
   workers, embedded Redis, SQLite WAL, fresh data directory) and seeds, straight into its
   database, a project with that model published as "bench" and a prediction key.
3. Bare forward: the same Predictor on the same decoded 640x480 image, one image at a time in
   this process (torch's default threads) while the server idles, once before and once after
   the load; forward-bound throughput = 1 / the faster median (a busy moment cannot flatter
   the ratio).
4. Over loopback: POST .../classify/iterations/bench/image/nostore with a 640x480 JPEG (raw
   octet-stream body) from 1, 4 and 16 concurrent clients (keep-alive, one thread each), then
   the storing endpoint at 4 clients. Requests/s, p50/p95 latency, errors, the server's CPU
   time per request (noise-robust: it does not grow while waiting for a core), and the ratio
   of requests/s to the forward-bound throughput.
5. Ranking: N stored predictions (bulk-inserted rows with real-size 1,280-value embeddings) and
   the Predictions tab's first page per sort, rendered in process by the Django test client on
   the same database (server time, no network), median of 10.
Prints the tables and appends them, with the command, to bench/RESULTS.md.

    .venv/bin/python bench/prediction_api.py --detection-flip

only times what a stored detection adds for Most gain's flip disagreement (issue 14): a quickly
trained detector's LoadedModel.run on one photograph without and with the mirror pass.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import (  # noqa: E402  (run as a script: the repo root is put on the path)
    LoupeServer,
    append_result,
    command_line,
    machine_line,
    percentile,
)
from training.ml.domains import BACKBONE_FOR_DOMAIN  # noqa: E402

COLOURS = [(220, 30, 30), (30, 200, 40), (30, 60, 220)]
PUBLISH_NAME = "bench"
# What a new project trains on and serves (the compact domain's backbone and its embedding).
BACKBONE = BACKBONE_FOR_DOMAIN["general_compact"]


def build_artifact() -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    from training.ml.artifact import ClassifierArtifact, save_artifact
    from training.ml.features import embed_pil, stock_engine
    from training.ml.preprocessing import PREPROCESSING_VERSION
    from training.ml.quick import train_quick

    rng = np.random.default_rng(0)
    images, targets = [], []
    for label, colour in enumerate(COLOURS):
        for _ in range(8):
            jitter = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
            images.append(PILImage.new("RGB", (64, 64), jitter))
            targets.append(np.eye(3, dtype=np.float32)[label])
    features = embed_pil(stock_engine(BACKBONE), images, BACKBONE)
    result = train_quick(features, np.stack(targets), multilabel=False, n_folds=3)
    artifact = ClassifierArtifact.from_quick(
        result.head,
        backbone=BACKBONE,
        tag_keys=["red", "green", "blue"],
        preprocessing_version=PREPROCESSING_VERSION,
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


def photo_jpeg() -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(1)
    base = np.linspace(0, 255, 640, dtype=np.float32)[None, :, None]
    pixels = base * rng.uniform(0.3, 1, size=(1, 1, 3)) + rng.normal(0, 25, (480, 640, 3))
    buffer = io.BytesIO()
    PILImage.fromarray(pixels.clip(0, 255).astype("uint8")).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def connect_django(data_dir: Path) -> None:
    os.environ.update(LOUPE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="project.settings")
    # In-process page renders come from Django's test client, whose host is "testserver".
    hosts = os.environ.get("LOUPE_ALLOWED_HOSTS", "localhost,127.0.0.1")
    os.environ["LOUPE_ALLOWED_HOSTS"] = f"{hosts},testserver"
    import django

    django.setup()
    import logging

    from django.conf import settings

    # django.setup() applies Loupe's logging config, which would log every client request here.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    # In-process page renders need no collected manifest (the server's uvicorn is unaffected).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def _embedding_dim() -> int:
    from training.ml.backbones import get_backbone

    return get_backbone(BACKBONE).feature_dim


def seed(artifact: bytes) -> dict[str, object]:
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from labeling.models import Membership, Project, Role, Tag
    from predictions.services.keys import create_key
    from training.models import Iteration, IterationTag

    user = get_user_model().objects.create_user("bench", password="bench-password")
    project = Project.objects.create(name="Bench", kind=Project.Kind.MULTICLASS, owner=user)
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    tags = [Tag.objects.create(project=project, name=n) for n in ("red", "green", "blue")]
    iteration = Iteration.objects.create(
        project=project,
        number=1,
        name="Iteration 1",
        status=Iteration.Status.COMPLETED,
        backbone=BACKBONE,
        published_name=PUBLISH_NAME,
    )
    for index, tag in enumerate(tags):
        IterationTag.objects.create(iteration=iteration, tag=tag, name=tag.name, index=index)
    iteration.artifact.save("model.pt", ContentFile(artifact), save=True)
    key = create_key(project=project, name="bench", by=user).secret
    return {"project": project, "iteration": iteration, "tags": tags, "key": key, "user": user}


def bare_forward_s(artifact: bytes, image: bytes, repeats: int) -> tuple[float, float]:
    """Median wall seconds of one forward pass, and CPU seconds (all threads) per pass."""
    from training.ml.artifact import Predictor, load_artifact
    from training.ml.preprocessing import load_rgb

    predictor = Predictor(load_artifact(io.BytesIO(artifact)))
    picture = load_rgb(image)
    for _ in range(5):
        predictor.predict([picture])
    times = []
    cpu_started = time.process_time()
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict([picture])
        times.append(time.perf_counter() - started)
    return statistics.median(times), (time.process_time() - cpu_started) / repeats


def load(
    server: LoupeServer, url: str, key: str, image: bytes, clients: int, total: int
) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [total]

    def client_loop() -> None:
        headers = {"Prediction-Key": key, "Content-Type": "application/octet-stream"}
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                try:
                    response = http.post(url, content=image, headers=headers)
                    ok = response.status_code == 200
                    detail = f"{response.status_code} {response.text[:80]}"
                except httpx.HTTPError as err:
                    ok, detail = False, str(err)
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies if ok else errors).append(elapsed if ok else detail)  # type: ignore[arg-type]

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    cpu_started = server.cpu_seconds("uvicorn")
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = server.cpu_seconds("uvicorn") - cpu_started
    ms = [1000 * v for v in latencies]
    return {
        "rps": len(latencies) / wall,
        "cpu_ms": 1000 * cpu / max(1, len(latencies) + len(errors)),
        "p50": statistics.median(ms) if ms else float("nan"),
        "p95": percentile(ms, 0.95) if ms else float("nan"),
        "errors": len(errors),
        "n": len(latencies),
        "first_error": errors[0] if errors else "",
    }


def seed_predictions(world: dict[str, object], rows: int) -> None:
    import numpy as np

    from labeling.models import Image
    from predictions.models import Prediction, PredictionScore

    project, iteration, tags = world["project"], world["iteration"], world["tags"]
    rng = np.random.default_rng(0)
    batch = 5000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        images = Image.objects.bulk_create(
            Image(
                project=project,
                file="images/shared.jpg",
                sha256=f"{start + i:064x}",
                format="JPEG",
                size_bytes=1,
                width=640,
                height=480,
                source=Image.Source.PREDICTION,
                is_training=False,
            )
            for i in range(n)
        )
        probs = rng.dirichlet((1, 1, 1), n)
        dim = _embedding_dim()
        predictions = Prediction.objects.bulk_create(
            Prediction(
                project=project,
                iteration=iteration,
                image=image,
                results=[
                    {"tagId": t.pk, "tagName": t.name, "probability": float(p[j])}
                    for j, t in enumerate(tags)
                ],
                embedding=rng.standard_normal(dim).astype("<f2").tobytes(),
                uncertainty=float(1 - (np.sort(p)[-1] - np.sort(p)[-2])),
                top_tag=tags[int(np.argmax(p))],
                top_probability=float(p.max()),
            )
            for image, p in zip(images, probs, strict=True)
        )
        PredictionScore.objects.bulk_create(
            PredictionScore(
                prediction=prediction, iteration=iteration, tag=tag, probability=float(p[j])
            )
            for prediction, p in zip(predictions, probs, strict=True)
            for j, tag in enumerate(tags)
        )


def ranking_times(world: dict[str, object]) -> dict[str, tuple[float, int]]:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(world["user"])
    url = f"/projects/{world['project'].pk}/predictions/"
    results = {}
    for sort in ("gain", "newest", "lowest", "highest"):
        query = {"sort": sort, "tag": world["tags"][0].pk}
        client.get(url, query)
        times = []
        for _ in range(10):
            reset_queries()
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url, query)
                times.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200, response.status_code
        results[sort] = (statistics.median(times), len(queries))
    return results


def ranking_only(rows: int) -> None:
    """The Predictions tab's first page per sort at `rows` stored predictions of an iteration
    trained on 30 images a tag (Most gain then blends coverage and doubt), with the training
    set's embeddings stored as quick training leaves them."""
    import subprocess
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="loupe-ranking-") as data_dir:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["LOUPE_DATA_DIR"] = data_dir
        manage = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        subprocess.run(manage, env=env, check=True, cwd=Path(__file__).resolve().parent.parent)
        os.environ.pop("DATABASE_URL", None)
        connect_django(Path(data_dir))
        from training.services.embeddings import save_training_embeddings

        world = seed(b"unused")
        iteration = world["iteration"]
        iteration.metrics = {"accuracy": 0.8}
        iteration.save(update_fields=["metrics"])
        iteration.tags.update(image_count=30)
        rng = np.random.default_rng(2)
        save_training_embeddings(
            iteration.pk, rng.standard_normal((90, _embedding_dim())).astype("float32")
        )
        started = time.perf_counter()
        seed_predictions(world, rows)
        print(f"seeded {rows:,} predictions in {time.perf_counter() - started:.0f} s")
        ranking = ranking_times(world)
        fresh = fresh_gain_times(world)
    print(f"Predictions tab, first page (40) at {rows:,} stored predictions, median of 10:")
    print("| sort | ms | queries |\n|---|---|---|")
    for sort, (ms, queries) in ranking.items():
        print(f"| {sort} | {ms:.1f} | {queries} |")
    print(
        "Most gain right after the open set changed (one prediction dismissed, so the order is "
        f"ranked afresh), 5 times: {', '.join(f'{ms:.0f}' for ms in fresh)} ms "
        f"(median {statistics.median(fresh):.0f} ms)"
    )


def fresh_gain_times(world: dict[str, object], repeats: int = 5) -> list[float]:
    """Wall ms of Most gain's first page each time right after one prediction left the tab."""
    from django.test import Client

    from predictions.models import Prediction

    client = Client()
    client.force_login(world["user"])
    url = f"/projects/{world['project'].pk}/predictions/"
    times = []
    for _ in range(repeats):
        first = Prediction.objects.open().filter(iteration=world["iteration"]).order_by("id")[0]
        Prediction.objects.filter(pk=first.pk).update(status=Prediction.Status.DISMISSED)
        started = time.perf_counter()
        response = client.get(url, {"sort": "gain"})
        times.append(1000 * (time.perf_counter() - started))
        assert response.status_code == 200, response.status_code
    return times


def detection_flip(repeats: int) -> None:
    """The mirror pass of a stored detection (Most gain's flip disagreement, issue 14): one
    LoadedModel.run of a quickly trained detector on a 640x480 photograph, without and with
    `mirror`, alternated so both see the same machine load; medians and their ratio."""
    import tempfile

    from PIL import Image

    from bench.detection_data import TAGS, generate
    from predictions.model_cache import LoadedModel
    from training.ml.data import ImageRef
    from training.ml.detection import TrainOptions, train_detector
    from training.ml.detection.model import save_detector_artifact

    with tempfile.TemporaryDirectory(prefix="loupe-flip-") as folder:
        samples = generate(Path(folder), images=12, seed=3)
        refs = [
            ImageRef(key=f"flip-{s.path.stem}", open=lambda p=s.path: p.open("rb")) for s in samples
        ]
        result = train_detector(
            refs,
            [s.boxes for s in samples],
            num_tags=len(TAGS),
            backbone=BACKBONE,
            budget_s=600,  # a cap: 5 epochs end it (the figure is a forward pass, not training)
            options=TrainOptions(holdout_fraction=0.3, cached_views=1, max_epochs=5),
        )
        with Image.open(samples[0].path) as image:
            picture = image.convert("RGB")
    buffer = io.BytesIO()
    save_detector_artifact(result.to_artifact(backbone=BACKBONE, num_tags=len(TAGS)), buffer)
    model = LoadedModel(buffer.getvalue())
    for mirror in (False, True, False, True):  # warm: engines built, first-call costs paid
        model.run(picture, mirror=mirror)
    plain, mirrored = [], []
    for _ in range(repeats):
        for mirror, times in ((False, plain), (True, mirrored)):
            started = time.perf_counter()
            model.run(picture, mirror=mirror)
            times.append(time.perf_counter() - started)
    plain_ms, mirror_ms = 1000 * statistics.median(plain), 1000 * statistics.median(mirrored)
    text = "\n".join(
        [
            "### Detection: the flip pass of Most gain (issue 14)",
            "",
            f"Command: `{command_line()}`",
            "",
            f"Machine: {machine_line()}; 1-minute load average at the end: "
            f"{os.getloadavg()[0]:.1f} (other work shares this machine).",
            "",
            "LoadedModel.run of a detector (quick training, 12 images, 5 epochs) on one 640x480 "
            f"photograph, the detector and the stock embedding, median of {repeats} alternated "
            "runs:",
            "",
            "| run | median ms | ratio |",
            "|---|---|---|",
            f"| image only (no-store answers) | {plain_ms:.0f} | 1.00 |",
            f"| image + mirror image (stored predictions, suggestions) | {mirror_ms:.0f} "
            f"| {mirror_ms / plain_ms:.2f} |",
            "",
        ]
    )
    print(text)
    append_result("Issue 14: Most gain that gains (active-learning benchmark)", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per concurrency level")
    parser.add_argument("--ranking-rows", type=int, default=100_000)
    parser.add_argument(
        "--ranking-only",
        action="store_true",
        help="only the Predictions tab's sorts, in process on a throwaway database (no server)",
    )
    parser.add_argument(
        "--detection-flip",
        action="store_true",
        help="only the cost of the mirror pass stored detections add (no server)",
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    if args.detection_flip:
        detection_flip(repeats=15)
        return
    if args.ranking_only:
        ranking_only(args.ranking_rows)
        return
    artifact = build_artifact()
    image = photo_jpeg()
    with LoupeServer.start() as server:
        connect_django(server.data_dir)
        world = seed(artifact)
        before = bare_forward_s(artifact, image, repeats=30)
        base = f"{server.url}/api/predict/{world['project'].pk}/classify/iterations/{PUBLISH_NAME}"
        load(server, f"{base}/image/nostore", world["key"], image, 1, 5)  # warm: model load
        runs = []
        for clients in (1, 4, 16):
            runs.append(
                (
                    "nostore",
                    clients,
                    load(
                        server,
                        f"{base}/image/nostore",
                        world["key"],
                        image,
                        clients,
                        max(args.requests, 2 * clients),
                    ),
                )
            )
        runs.append(
            ("store", 4, load(server, f"{base}/image", world["key"], image, 4, args.requests))
        )
        # Measured again once the stack has settled (workers finish starting during the first
        # one); the faster of the two is the reference, so a busy moment cannot flatter the
        # ratio.
        forward_s, forward_cpu_s = min(before, bare_forward_s(artifact, image, repeats=30))
        seed_started = time.perf_counter()
        seed_predictions(world, args.ranking_rows)
        seed_s = time.perf_counter() - seed_started
        ranking = ranking_times(world)

    forward_rps = 1 / forward_s
    lines = [
        "### Prediction API and Predictions tab",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Machine: {machine_line()}; server as `python -m project.up` starts it (uvicorn, one "
        f"process). Image: 640x480 JPEG ({len(image) / 1000:.0f} kB), EfficientNet-Lite0 224 px "
        f"+ linear head (3 tags), raw octet-stream body. 1-minute load average at the end: "
        f"{os.getloadavg()[0]:.1f} (other work shares this machine).",
        "",
        f"Bare forward (same Predictor at this process's default threads, decoded image, server "
        f"idle; faster of a run before and after the load): {1000 * forward_s:.1f} ms median, "
        f"{1000 * forward_cpu_s:.1f} ms CPU -> forward-bound {forward_rps:.1f} images/s.",
        "",
        "Server CPU/request: user + system time of the uvicorn process per request (the whole "
        "request: HTTP, key, decode, forward, JSON; unlike wall time it does not grow while "
        "waiting for a core).",
        "",
        "| endpoint | clients | requests | errors | req/s | p50 ms | p95 ms "
        "| server CPU/request ms | ratio to forward |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, clients, run in runs:
        lines.append(
            f"| {name} | {clients} | {run['n']} | {run['errors']} | {run['rps']:.1f} | "
            f"{run['p50']:.0f} | {run['p95']:.0f} | {run['cpu_ms']:.1f} | "
            f"{run['rps'] / forward_rps:.2f} |"
        )
    at4 = next(run for name, clients, run in runs if name == "nostore" and clients == 4)
    goal = "meets" if at4["rps"] / forward_rps >= 0.7 and at4["errors"] == 0 else "MISSES"
    lines += [
        "",
        f"- At 4 clients: **{at4['rps'] / forward_rps:.2f}** of the forward-bound throughput, "
        f"{at4['errors']} errors ({goal} the goal of >= 0.7 with zero errors).",
        "",
        f"Predictions tab, first page (40 thumbnails) at {args.ranking_rows:,} stored "
        f"predictions of one iteration (seeded in {seed_s:.0f} s), server time in process, "
        "median of 10:",
        "",
        "| sort | ms | queries |",
        "|---|---|---|",
    ]
    for sort, (ms, queries) in ranking.items():
        lines.append(f"| {sort} | {ms:.1f} | {queries} |")
    worst = max(ms for ms, _ in ranking.values())
    lines.append("")
    lines.append(
        f"- Slowest sort: {worst:.1f} ms ({'meets' if worst <= 150 else 'MISSES'} the goal of "
        "<= 150 ms)."
    )
    errors = [run["first_error"] for _, _, run in runs if run["first_error"]]
    if errors:
        lines.append(f"- First error seen: `{errors[0]}`")
    text = "\n".join(lines)
    print(text)
    append_result("Issue 5: predictions", text)


if __name__ == "__main__":
    main()
