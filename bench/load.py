"""Mixed load at 1, 8 and 32 concurrent clients on SQLite and on PostgreSQL (issue 16).

    .venv/bin/python bench/load.py [--seconds 8] [--db sqlite,postgres] [--no-record]

For each database, a fresh stack as `make run` starts it (bench.common.LoupeServer: uvicorn,
Celery workers, embedded Redis; PostgreSQL at TEST_POSTGRES_URL's server, default
postgres://postgres@127.0.0.1:5432, in a throwaway database) with one project: 200 tagged
images and a published EfficientNet-Lite0 classifier. Then, for `--seconds` at each level,
every client (a thread with its own keep-alive connection and API token) loops over a realistic
mix:

- 40% gallery page: GET /api/projects/<p>/images/?page_size=50 (every 4th one the next page);
- 35% tag save: PUT .../images/<i>/tags/ with the version it last saw. 9 in 10 go to the
  client's own images (annotators split the work); 1 in 10 to one "hot" image all clients
  share, read first, so two clients may race: a 409 there is a refused conflict, not an error;
- 10% upload: POST .../images/upload/ with one new 48x48 PNG;
- 15% prediction: POST /api/predict/<p>/classify/iterations/bench/image (stored).

Errors: any other status than the expected one, or a failed connection (goal 0).
Lost writes (goal 0): after the run, the database must hold every write a client was told
succeeded: each own image's last acknowledged tag and version, the hot image's highest
acknowledged version with its tag, every acknowledged upload (row and stored file) and every
acknowledged stored prediction.
Ratios: each level's throughput against 1 client on the same database, and PostgreSQL's
against SQLite's at the same level.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import httpx  # noqa: E402

from bench.common import (  # noqa: E402  (run as a script: the repo root is put on the path)
    LoupeServer,
    append_result,
    command_line,
    machine_line,
    percentile,
)

LEVELS = (1, 8, 32)
SEED_IMAGES = 200
MIX = (("gallery", 40), ("tag", 35), ("upload", 10), ("predict", 15))
HOT_SHARE = 0.1
DEFAULT_PG_SERVER = "postgres://postgres@127.0.0.1:5432"


def _png(rng: random.Random, size: int = 48) -> bytes:
    from PIL import Image as PILImage

    picture = PILImage.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (320, 240), (30, 200, 40)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class Ledger:
    """What the server acknowledged, to check against the database afterwards."""

    own: dict[int, tuple[int, int]] = field(default_factory=dict)  # image -> (tag, version)
    hot: list[tuple[int, int]] = field(default_factory=list)  # (version, tag) acknowledged
    uploads: list[int] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    conflicts: int = 0


@dataclass
class World:
    url: str
    token: str
    project: int
    tags: list[int]
    images: list[int]  # the seeded images, split among clients
    hot: int
    key: str


def _client(
    world: World,
    index: int,
    clients: int,
    seconds: float,
    ledger: Ledger,
    outcome: Outcome,
    lock: threading.Lock,
    versions: dict[int, int],
) -> None:
    rng = random.Random(1000 * clients + index)
    mine = [i for n, i in enumerate(world.images) if n % clients == index and i != world.hot]
    base = f"/api/projects/{world.project}"
    jpeg = _jpeg()
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    headers = {"Authorization": f"Token {world.token}"}
    gallery_cursor: Any = None
    deadline = time.perf_counter() + seconds
    with httpx.Client(base_url=world.url, headers=headers, timeout=120) as http:
        while time.perf_counter() < deadline:
            kind = rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                if kind == "gallery":
                    params: dict[str, Any] = {"page_size": 50}
                    if gallery_cursor and rng.random() < 0.25:
                        params["after"] = gallery_cursor
                    response = http.get(f"{base}/images/", params=params)
                    ok = response.status_code == 200
                    if ok:
                        gallery_cursor = response.json().get("next_cursor")
                elif kind == "tag":
                    hot = rng.random() < HOT_SHARE or not mine
                    image = world.hot if hot else rng.choice(mine)
                    if hot:
                        seen = http.get(f"{base}/images/{image}/").json()["version"]
                    else:
                        seen = versions[image]
                    tag = rng.choice(world.tags)
                    response = http.put(
                        f"{base}/images/{image}/tags/", json={"tag_ids": [tag], "version": seen}
                    )
                    ok = response.status_code == 200
                    if ok:
                        version = response.json()["version"]
                        with lock:
                            if hot:
                                ledger.hot.append((version, tag))
                            else:
                                versions[image] = version
                                ledger.own[image] = (tag, version)
                    elif hot and response.status_code == 409:
                        with lock:
                            outcome.conflicts += 1
                        continue  # a refused race: neither an error nor a timed request
                elif kind == "upload":
                    files = {"files": (f"{uuid.uuid4().hex}.png", _png(rng), "image/png")}
                    response = http.post(f"{base}/images/upload/", files=files)
                    ok = response.status_code == 201
                    if ok:
                        with lock:
                            ledger.uploads += [
                                row["image_id"] for row in response.json()["accepted"]
                            ]
                else:
                    response = http.post(
                        f"/api/predict/{world.project}/classify/iterations/bench/image",
                        content=jpeg,
                        headers={
                            "Prediction-Key": world.key,
                            "Content-Type": "application/octet-stream",
                        },
                    )
                    ok = response.status_code == 200
                    if ok:
                        with lock:
                            ledger.predictions.append(response.json()["id"])
                detail = "" if ok else f"{kind}: {response.status_code} {response.text[:120]}"
            except httpx.HTTPError as err:
                ok, detail = False, f"{kind}: {type(err).__name__} {err}"
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    outcome.latencies[kind].append(elapsed)
                else:
                    outcome.errors.append(detail)


def run_level(
    world: World, clients: int, seconds: float, ledger: Ledger, versions: dict[int, int]
) -> dict[str, Any]:
    outcome, lock = Outcome(), threading.Lock()
    threads = [
        threading.Thread(
            target=_client,
            args=(world, i, clients, seconds, ledger, outcome, lock, versions),
        )
        for i in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    every = [1000 * v for values in outcome.latencies.values() for v in values]
    by_kind = {
        kind: {
            "n": len(values),
            "p50": percentile([1000 * v for v in values], 0.5),
            "p95": percentile([1000 * v for v in values], 0.95),
            "p99": percentile([1000 * v for v in values], 0.99),
        }
        for kind, values in outcome.latencies.items()
        if values
    }
    return {
        "clients": clients,
        "requests": len(every),
        "rps": len(every) / wall,
        "p50": percentile(every, 0.5) if every else float("nan"),
        "p95": percentile(every, 0.95) if every else float("nan"),
        "p99": percentile(every, 0.99) if every else float("nan"),
        "errors": len(outcome.errors),
        "first_errors": outcome.errors[:3],
        "conflicts": outcome.conflicts,
        "by_kind": by_kind,
    }


def count_lost(ledger: Ledger, hot_id: int) -> dict[str, int]:
    """Acknowledged writes the database does not hold (run in this process, through the ORM)."""
    from django.core.files.storage import default_storage

    from labeling.models import Image, ImageTag
    from predictions.models import Prediction

    lost = {"tags": 0, "hot": 0, "uploads": 0, "predictions": 0}
    rows = {i.pk: i for i in Image.objects.filter(pk__in=list(ledger.own))}
    tags = defaultdict(set)
    for image_id, tag_id in ImageTag.objects.filter(image_id__in=list(ledger.own)).values_list(
        "image_id", "tag_id"
    ):
        tags[image_id].add(tag_id)
    for image_id, (tag, version) in ledger.own.items():
        row = rows.get(image_id)
        if row is None or row.version != version or tags[image_id] != {tag}:
            lost["tags"] += 1
    if ledger.hot:
        version, tag = max(ledger.hot)
        row = Image.objects.get(pk=hot_id)
        held = set(ImageTag.objects.filter(image_id=hot_id).values_list("tag_id", flat=True))
        versions = [v for v, _ in ledger.hot]
        # Each acknowledged write got its own version (compare-and-set), the last one stayed.
        lost["hot"] = (row.version != version or held != {tag}) + (
            len(versions) - len(set(versions))
        )
    uploaded = {i.pk: i.file.name for i in Image.objects.filter(pk__in=ledger.uploads)}
    lost["uploads"] = sum(
        1 for pk in ledger.uploads if pk not in uploaded or not default_storage.exists(uploaded[pk])
    )
    held_predictions = {
        str(pk)
        for pk in Prediction.objects.filter(pk__in=ledger.predictions).values_list("pk", flat=True)
    }
    lost["predictions"] = sum(1 for pk in ledger.predictions if str(pk) not in held_predictions)
    return lost


def one_database(db: str, seconds: float) -> dict[str, Any]:
    """The whole run on one database, in this process (a child of main())."""
    from bench.prediction_api import PUBLISH_NAME, build_artifact, connect_django, seed

    assert PUBLISH_NAME == "bench"
    artifact = build_artifact()
    with LoupeServer.start() as server:
        connect_django(server.data_dir)
        world_rows = seed(artifact)
        project = world_rows["project"]
        token = server.token()
        rng = random.Random(7)
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Token {token}"}, timeout=300
        ) as http:
            for _ in range(SEED_IMAGES // 50):
                files = [
                    ("files", (f"seed-{uuid.uuid4().hex}.png", _png(rng), "image/png"))
                    for _ in range(50)
                ]
                response = http.post(f"/api/projects/{project.pk}/images/upload/", files=files)
                response.raise_for_status()
        from labeling.models import Image

        images = list(Image.objects.filter(project=project).values_list("pk", "version"))
        versions = dict(images)
        world = World(
            url=server.url,
            token=token,
            project=project.pk,
            tags=[t.pk for t in world_rows["tags"]],
            images=[pk for pk, _ in images],
            hot=images[0][0],
            key=str(world_rows["key"]),
        )
        ledger = Ledger()
        run_level(world, 2, 2.0, Ledger(), dict(versions))  # warm: model load, connections
        versions = dict(Image.objects.filter(project=project).values_list("pk", "version"))
        levels = [run_level(world, c, seconds, ledger, versions) for c in LEVELS]
        lost = count_lost(ledger, world.hot)
    return {
        "db": db,
        "levels": levels,
        "lost": lost,
        "acknowledged": {
            "tags": len(ledger.own),
            "hot": len(ledger.hot),
            "uploads": len(ledger.uploads),
            "predictions": len(ledger.predictions),
        },
        "machine": machine_line(),
        "load": os.getloadavg()[0],
    }


def _postgres(server: str) -> tuple[str, str]:
    import psycopg

    name = f"loupe_bench_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}", name


def _drop_postgres(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child(db: str, seconds: float) -> dict[str, Any]:
    env = {**os.environ}
    env.pop("DATABASE_URL", None)
    dropped = None
    pg_server = os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG_SERVER + "/x").rsplit("/", 1)[0]
    if db == "postgres":
        env["DATABASE_URL"], dropped = _postgres(pg_server)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", db, "--seconds", str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if dropped:
            _drop_postgres(pg_server, dropped)
    if done.returncode != 0:
        raise SystemExit(f"{db} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: list[dict[str, Any]], seconds: float) -> str:
    machine = results[0]["machine"]
    for database in (", SQLite WAL", ", PostgreSQL"):
        machine = machine.replace(database, "")
    lines = [
        "### Mixed load: gallery, tag saves, uploads, predictions at 1/8/32 clients",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Machine: {machine}; server as `make run` "
        f"starts it (one uvicorn process, Celery workers, embedded Redis). {seconds:g} s a "
        "level; mix 40% gallery page (50 images), 35% tag save (1 in 10 on one image all "
        "clients share), 10% upload of one 48x48 PNG, 15% stored prediction (Lite0, 320x240 "
        "JPEG). 1-minute load average at the end: "
        + ", ".join(f"{r['db']} {r['load']:.1f}" for r in results)
        + " (other work shares this machine).",
        "",
        "| database | clients | requests | req/s | x 1 client | p50 ms | p95 ms | p99 ms | errors "
        "| conflicts refused | lost writes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        first = result["levels"][0]["rps"]
        lost = sum(result["lost"].values())
        for level in result["levels"]:
            lines.append(
                f"| {result['db']} | {level['clients']} | {level['requests']} | "
                f"{level['rps']:.1f} | {level['rps'] / first:.2f} | {level['p50']:.0f} | "
                f"{level['p95']:.0f} | {level['p99']:.0f} | {level['errors']} | "
                f"{level['conflicts']} | "
                f"{lost if level is result['levels'][-1] else ''} |"
            )
    lines += ["", "p50 / p95 / p99 ms by request at 32 clients:", ""]
    lines += ["| database | gallery | tag save | upload | prediction |", "|---|---|---|---|---|"]
    for result in results:
        kinds = result["levels"][-1]["by_kind"]
        cells = [
            f"{kinds[k]['p50']:.0f} / {kinds[k]['p95']:.0f} / {kinds[k]['p99']:.0f}"
            if k in kinds
            else "-"
            for k in ("gallery", "tag", "upload", "predict")
        ]
        lines.append(f"| {result['db']} | " + " | ".join(cells) + " |")
    if len(results) == 2:
        sqlite, postgres = results
        ratios = ", ".join(
            f"{a['clients']} clients {b['rps'] / a['rps']:.2f}"
            for a, b in zip(sqlite["levels"], postgres["levels"], strict=True)
        )
        lines += ["", f"PostgreSQL / SQLite throughput: {ratios}."]
    for result in results:
        ack = result["acknowledged"]
        lines.append(
            f"\n{result['db']}: lost writes {sum(result['lost'].values())} of "
            f"{ack['tags']} images' last tags, {ack['hot']} shared-image saves, "
            f"{ack['uploads']} uploads, {ack['predictions']} stored predictions "
            f"({result['lost']})."
        )
        for level in result["levels"]:
            if level["first_errors"]:
                lines.append(f"First errors at {level['clients']}: {level['first_errors']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per level")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_database(args.child, args.seconds)))
        return
    results = [child(db, args.seconds) for db in args.db.split(",")]
    text = report(results, args.seconds)
    print(text)
    if not args.no_record:
        append_result("Issue 16: reliability and security", text)
    bad = sum(level["errors"] for r in results for level in r["levels"]) + sum(
        sum(r["lost"].values()) for r in results
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
