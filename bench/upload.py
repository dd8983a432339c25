"""Upload benchmark: 1,000 640x480 JPEGs through the API in batches of 50, every one validated.

    .venv/bin/python bench/upload.py [--images 1000] [--batch 50] [--no-record]

Runs the real stack (`python -m project.up`: uvicorn, Celery workers, embedded Redis, SQLite)
against a temporary data directory, then measures, side by side in the same run:

- upload: POST /api/projects/<id>/images/upload/ with 50 files per request, one request at a
  time, token auth; every file is hashed, identified, fully decoded, stored and inserted, and
  thumbnails are queued (the worker makes them meanwhile, on the same 2 cores);
- HTTP floor: the SAME request bodies POSTed to a URL that answers 404, i.e. transfer, the
  ASGI server reading the body and Django's middleware, with no parsing or work;
- decode floor: Pillow open + load (full decode) + sha256 of the same files in this process,
  one core, nothing else: the irreducible work of validating them.

It prints images/s, p50/p95 per batch and the ratios, and appends them to bench/RESULTS.md.
The goal (issue 2): >= 150 images/s through the API.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    LoupeServer,
    append_result,
    command_line,
    machine_line,
    percentile,
)

GOAL_IMAGES_PER_S = 150.0


def make_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """Distinct photo-like 640x480 JPEGs: smooth gradients, blobs and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    images = []
    for i in range(count):
        base = np.stack(
            [
                (x * rng.uniform(0.1, 0.4) + y * rng.uniform(0.0, 0.3) + i) % 256,
                (x * rng.uniform(0.0, 0.3) + y * rng.uniform(0.1, 0.4)) % 256,
                np.full_like(x, rng.uniform(40, 200)),
            ],
            axis=-1,
        )
        for _ in range(3):
            cx, cy, r = rng.uniform(0, 640), rng.uniform(0, 480), rng.uniform(30, 120)
            base[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        base += rng.normal(0, 6, base.shape)
        buffer = io.BytesIO()
        PILImage.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=85
        )
        images.append(buffer.getvalue())
    return images


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """One multipart/form-data body with the files under "files", encoded once up front."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, content in files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def decode_floor(images: list[bytes]) -> tuple[float, float]:
    """Pillow open + full decode + sha256 in this process (one core): (images/s, CPU ms each)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for data in images:
        hashlib.sha256(data).hexdigest()
        with PILImage.open(io.BytesIO(data)) as image:
            image.load()
    cpu_ms = (time.process_time() - cpu_started) * 1000 / len(images)
    return len(images) / (time.perf_counter() - started), cpu_ms


def post_all(client, url: str, bodies: list[tuple[bytes, str]], expect: int) -> list[float]:
    """POST each body in turn; the seconds each took."""
    timings = []
    for body, content_type in bodies:
        started = time.perf_counter()
        response = client.post(url, content=body, headers={"Content-Type": content_type})
        timings.append(time.perf_counter() - started)
        if response.status_code != expect:
            raise SystemExit(f"POST {url} answered {response.status_code}: {response.text[:300]}")
    return timings


def wait_for_thumbnails(
    server: LoupeServer, project_id: int, count: int, timeout_s: float = 600
) -> float:
    """Seconds until the worker has written `count` thumbnails (local storage: count files)."""
    folder = server.data_dir / "media" / "thumbnails" / str(project_id)
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        done = len(list(folder.glob("*.jpg"))) if folder.exists() else 0
        if done >= count:
            return time.perf_counter() - started
        time.sleep(0.25)
    raise SystemExit(f"Only {done} of {count} thumbnails after {timeout_s:g} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    print(f"Generating {args.images} 640x480 JPEGs...", flush=True)
    images = make_jpegs(args.images)
    mean_kb = statistics.mean(len(d) for d in images) / 1000
    batches = [
        [(f"img{i:05d}.jpg", images[i]) for i in range(start, min(start + args.batch, args.images))]
        for start in range(0, args.images, args.batch)
    ]
    bodies = [multipart(batch) for batch in batches]

    print("Starting Loupe (python -m project.up)...", flush=True)
    with LoupeServer.start() as server, server.api() as api:
        project = api.post(
            "/api/projects/",
            json={"name": "Upload bench", "kind": "multiclass", "domain": "general_compact"},
        )
        project.raise_for_status()
        project_id = project.json()["id"]
        upload_url = f"/api/projects/{project_id}/images/upload/"
        floor_url = f"/api/projects/{project_id}/no-such-endpoint/"
        # Warm both paths (imports, first connections) with a batch that is not counted.
        warm = [multipart([(f"warm{i}.jpg", d) for i, d in enumerate(make_jpegs(5, seed=99))])]
        post_all(api, upload_url, warm, expect=201)
        post_all(api, floor_url, bodies[:2], expect=404)

        floor_timings = post_all(api, floor_url, bodies, expect=404)
        # In-process decode floor right before and after the upload, while the server idles:
        # the mean of the two follows the machine's load over the run.
        decode_before = decode_floor(images)
        web_cpu, worker_cpu = server.cpu_seconds("uvicorn"), server.cpu_seconds("worker")
        started = time.perf_counter()
        upload_timings = post_all(api, upload_url, bodies, expect=201)
        upload_s = time.perf_counter() - started
        web_cpu = server.cpu_seconds("uvicorn") - web_cpu
        thumbs_after_s = wait_for_thumbnails(server, project_id, args.images + 5)
        time.sleep(1)  # let the last task's CPU time reach /proc
        worker_cpu = server.cpu_seconds("worker") - worker_cpu
        decode_after = decode_floor(images)
        decode_ips = (decode_before[0] + decode_after[0]) / 2
        decode_cpu_ms = (decode_before[1] + decode_after[1]) / 2
        count = api.get(f"/api/projects/{project_id}/images/", params={"page_size": 1})
        stored = count.json().get("count") if count.status_code == 200 else None

    load_after = os.getloadavg()[0]
    web_ms = web_cpu * 1000 / args.images
    worker_ms = worker_cpu * 1000 / (args.images + 5)
    upload_ips = args.images / upload_s
    floor_ips = args.images / sum(floor_timings)
    ms = [t * 1000 for t in upload_timings]
    floor_ms = [t * 1000 for t in floor_timings]
    verdict = "meets" if upload_ips >= GOAL_IMAGES_PER_S else "MISSES"
    rows = [
        (
            "upload (validate, store, insert, queue thumbnails)",
            upload_ips,
            percentile(ms, 0.5),
            percentile(ms, 0.95),
        ),
        (
            "HTTP floor: same bodies POSTed to a 404 URL",
            floor_ips,
            percentile(floor_ms, 0.5),
            percentile(floor_ms, 0.95),
        ),
    ]
    table = [
        "| path | images/s | p50 ms per batch | p95 ms per batch |",
        "|---|---|---|---|",
        *[f"| {name} | {ips:.0f} | {p50:.0f} | {p95:.0f} |" for name, ips, p50, p95 in rows],
        f"| decode floor: Pillow open + load + sha256, in process, 1 core | {decode_ips:.0f} "
        "| n/a | n/a |",
    ]
    section = "\n".join(
        [
            f"### Upload through the API: {args.images} 640x480 JPEGs in batches of {args.batch}",
            "",
            f"Command: `{command_line()}`",
            "",
            f"Machine: {machine_line()}; server started by `python -m project.up` (uvicorn, 2 "
            f"Celery worker processes making thumbnails meanwhile). JPEGs average {mean_kb:.0f} kB;"
            " one request at a time, token auth. 1-minute load average "
            f"{load_before:.1f} before, {load_after:.1f} after (other work shares the machine: "
            "compare the ratios, which are measured side by side).",
            "",
            *table,
            "",
            f"- Upload: **{upload_ips:.0f} images/s** ({verdict} the goal of "
            f"≥ {GOAL_IMAGES_PER_S:.0f}); {stored} images listed afterwards.",
            f"- Ratio to the HTTP floor (same bytes, no work): {upload_ips / floor_ips:.2f}.",
            f"- Ratio to the in-process decode floor: {upload_ips / decode_ips:.2f}.",
            f"- CPU time per image (not inflated by waiting for a core): web server "
            f"{web_ms:.1f} ms, decode floor {decode_cpu_ms:.1f} ms "
            f"(ratio {web_ms / decode_cpu_ms:.2f})"
            f"; the worker's thumbnails {worker_ms:.1f} ms. Together "
            f"{web_ms + worker_ms:.1f} ms of CPU per image: on 2 otherwise idle cores that is "
            f"a ceiling of about {2000 / (web_ms + worker_ms):.0f} images/s.",
            f"- All {args.images + 5} thumbnails were written {thumbs_after_s:.1f} s after the "
            "last upload answered.",
        ]
    )
    print()
    print(section)
    if not args.no_record:
        append_result("Issue 2: foundation", section)
        print("\nAppended to bench/RESULTS.md.")


if __name__ == "__main__":
    main()
