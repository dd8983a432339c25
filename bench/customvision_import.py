# ruff: noqa: E501  (the RESULTS.md section is a Markdown template: one table row a line)
"""Custom Vision project import between two local servers (issue 12): images/s against the
native upload API's rate, measured in the same run.

    .venv/bin/python bench/customvision_import.py [--images 1000] [--no-record]

What it does:
1. Starts two whole Loupe stacks as `make run` does (bench.common.LoupeServer: uvicorn, Celery
   workers, embedded Redis, SQLite WAL, fresh data directories): A, the source, and B.
2. Native upload rate: uploads `--images` generated 640x480 JPEGs into a new classification
   project on A through the REST upload API, 50 per request, two tags in turn (this is also
   the source project).
3. Custom Vision import: makes a training key on A, then asks B through its REST API
   (POST /api/customvision-imports/) to copy A's project through A's Custom Vision Training
   API; B's worker does it. Timed from the request to the job's `done`, polled every 0.2 s.
4. Uploads the same images into B through its upload API (the machine is shared: the upload
   rate is measured before and after the import, and their mean is the reference); CPU time
   of both stacks per image for the upload and for the import, which waiting does not inflate.
5. Checks B's copy (image count, nothing refused) and prints the rates and their ratio.
Goal: the import at >= 0.5 of the native upload rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import httpx  # noqa: E402

from bench.common import (  # noqa: E402  (run as a script: the repo root is put on the path)
    LoupeServer,
    append_result,
    command_line,
    machine_line,
)
from bench.upload import make_jpegs, multipart  # noqa: E402

GOAL_RATIO = 0.5
BATCH = 50


def upload_source(api: httpx.Client, images: list[bytes], name: str) -> tuple[int, float]:
    """A classification project with `images`, uploaded 50 a request; (id, seconds)."""
    project = api.post("/api/projects/", json={"name": name, "kind": "multiclass"})
    project.raise_for_status()
    project_id = project.json()["id"]
    tags = [
        api.post(f"/api/projects/{project_id}/tags/", json={"name": name}).json()["id"]
        for name in ("round", "square")
    ]
    started = time.perf_counter()
    for number, start in enumerate(range(0, len(images), BATCH)):
        files = [
            (f"img{start + i}.jpg", data) for i, data in enumerate(images[start : start + BATCH])
        ]
        body, content_type = multipart(files)
        # The tag, as one more form field before the closing boundary.
        boundary = content_type.split("boundary=")[1]
        field = f'--{boundary}\r\nContent-Disposition: form-data; name="tag_ids"\r\n\r\n'
        body = body.removesuffix(f"--{boundary}--\r\n".encode()) + (
            f"{field}{tags[number % 2]}\r\n--{boundary}--\r\n".encode()
        )
        response = api.post(
            f"/api/projects/{project_id}/images/upload/",
            content=body,
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 201, response.text[:500]
        assert response.json()["rejected_count"] == 0, response.text[:500]
    return project_id, time.perf_counter() - started


def import_on_b(b: httpx.Client, endpoint: str, key: str, source_id: str) -> tuple[dict, float]:
    started = time.perf_counter()
    response = b.post(
        "/api/customvision-imports/",
        json={"endpoint": endpoint, "training_key": key, "project_id": source_id},
    )
    assert response.status_code == 202, response.text[:500]
    url = f"/api/customvision-imports/{response.json()['id']}/"
    while True:
        job = b.get(url).json()
        if job["state"] in {"done", "failed"}:
            return job, time.perf_counter() - started
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    images = make_jpegs(args.images)
    size_kb = sum(map(len, images)) / len(images) / 1024
    with (
        LoupeServer.start() as a,
        LoupeServer.start() as b,
        a.api() as api_a,
        b.api() as api_b,
    ):
        cpu = a.cpu_seconds("") + b.cpu_seconds("")
        _, upload_s = upload_source(api_a, images, "CV source")
        time.sleep(5)  # A's thumbnails of the upload finish first
        upload_cpu = a.cpu_seconds("") + b.cpu_seconds("") - cpu
        print(f"uploaded {args.images} images to A in {upload_s:.1f} s")
        key = a.manage("create_api_key", "admin", "--kind", "training").strip().splitlines()[-1]
        projects = httpx.get(
            f"{a.url}/customvision/v3.3/training/projects",
            headers={"Training-Key": key},
            timeout=30,
        ).json()
        source_id = next(p["id"] for p in projects if p["name"] == "CV source")
        cpu = a.cpu_seconds("") + b.cpu_seconds("")
        job, import_s = import_on_b(api_b, a.url, key, source_id)
        assert job["state"] == "done", job["message"]
        # The same upload again, into B this time, after the import: the machine is shared,
        # so the upload rate is measured on both sides of the import.
        time.sleep(5)  # B's thumbnails of the import finish first
        import_cpu = a.cpu_seconds("") + b.cpu_seconds("") - cpu
        _, upload_again_s = upload_source(api_b, images, "Uploaded again")
        copied = api_b.get(f"/api/projects/{job['project_id']}/images/?page_size=1").json()
        tagged = api_b.get(f"/api/projects/{job['project_id']}/tags/").json()
        load = os.getloadavg()[0]
    upload_rate = args.images / ((upload_s + upload_again_s) / 2)
    import_rate = args.images / import_s
    ratio = import_rate / upload_rate
    verdict = "meets" if ratio >= GOAL_RATIO else "MISSES"
    section = f"""### Custom Vision project import between two local servers: {args.images:,} images (bench/customvision_import.py)

Command: `{command_line()}`
Machine: {machine_line()}; two whole stacks (`project.up`: uvicorn, Celery workers, embedded Redis each) on the same machine; 1-minute load average {load:.1f} at the end (other work shares the machine: compare the ratio, measured side by side). Images: {args.images:,} 640x480 JPEGs of {size_kb:.0f} kB on average, a multiclass project with two tags.

| path | seconds | images/s |
|---|---|---|
| native upload API into A (50 a request, tagged), before the import | {upload_s:.1f} | {args.images / upload_s:.0f} |
| Custom Vision import, B copying A through A's Training API (B's worker) | {import_s:.1f} | {import_rate:.0f} |
| native upload API into B, after the import | {upload_again_s:.1f} | {args.images / upload_again_s:.0f} |

- Import: **{import_rate:.0f} images/s**, {ratio:.2f} of the native upload rate (the mean of the two uploads; {verdict} the goal of >= {GOAL_RATIO}).
- CPU time of both stacks per image (not inflated by waiting for a core): upload {1000 * upload_cpu / args.images:.1f} ms (its thumbnails included), import {1000 * import_cpu / args.images:.1f} ms (A listing and serving the files, B downloading, storing and making thumbnails); ratio {upload_cpu / import_cpu:.2f}.
- {job["images_copied"]:,} copied, {job["images_refused"]} refused, B's copy lists {copied["count"]:,} images, tags {", ".join(f"{t['name']} ({t['image_count']})" for t in tagged)}.
"""
    print(section)
    if not args.no_record:
        append_result("Issue 12: data in and out", section)


if __name__ == "__main__":
    main()
