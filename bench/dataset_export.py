"""Dataset export of many images (issue 12): images/s and the exporting process's peak RSS.

    .venv/bin/python bench/dataset_export.py [--images 20000] [--format coco] [--no-record]

What it does:
1. Makes a fresh data directory (SQLite, local media), migrates it and seeds one detection
   project with `--images` small generated PNGs (distinct content, 64x48 px), two thirds with
   one or two boxes, one in ten marked "No objects", the rest unlabeled.
2. Runs the export the way the worker does (`run_export`, the function the Celery task
   `labeling.export_dataset` calls), in a subprocess of its own, and reads that process's peak
   RSS from `getrusage(RUSAGE_SELF).ru_maxrss` (the kernel's high-water mark) and its RSS just
   before the export (Django loaded), so the growth the export adds is visible.
3. Side by side, in another subprocess: the floor, a bare `zipfile` copy of the same image files
   read straight from disk (no database, no annotation file, no storage layer).
4. Checks the archive (members, annotation count, a CRC pass over every member) and prints
   images/s, the ratio to the floor and the peak RSS against the 500 MB goal.
"""

# ruff: noqa: E501  (the RESULTS.md section is a Markdown template: one table row a line)
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import append_result, command_line, machine_line  # noqa: E402

GOAL_MB = 500


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    """ru_maxrss (KB on Linux). Linux carries it over fork and exec, so every child is started
    by this script's small parent (no Django loaded), never by the seeding process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hwm_mb() -> float:
    """VmHWM: the peak of this address space alone (reset by exec), as a cross-check."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _setup(data_dir: str) -> None:
    os.environ.update(
        LOUPE_DATA_DIR=data_dir,
        MEDIA_ROOT=str(Path(data_dir) / "media"),
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    import django

    django.setup()


def seed(count: int) -> dict[str, int]:
    """One detection project of `count` distinct PNGs, written through the default storage."""
    import hashlib

    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from PIL import Image as PILImage

    from labeling.models import Image, ImageTag, Membership, Project, Region, Role, Tag

    user = get_user_model().objects.create_user("bench", password="bench-password")
    project = Project.objects.create(name="Export bench", kind=Project.Kind.DETECTION, owner=user)
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    tags = [Tag.objects.create(project=project, name=n) for n in ("car", "bike", "person")]
    negative = Tag.objects.create(project=project, name="Negative", kind=Tag.Kind.NEGATIVE)
    rng = np.random.default_rng(12)
    for start in range(0, count, 1000):
        rows, labels = [], []
        for number in range(start, min(count, start + 1000)):
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            pixels[0, 0] = (number % 256, number // 256 % 256, number // 65536)  # distinct
            buffer = io.BytesIO()
            PILImage.fromarray(pixels).save(buffer, format="PNG")
            content = buffer.getvalue()
            name = default_storage.save(f"images/bench/{number}.png", ContentFile(content))
            rows.append(
                Image(
                    project=project,
                    file=name,
                    original_name=f"frame{number:06d}.png",
                    sha256=hashlib.sha256(content).hexdigest(),
                    format="PNG",
                    size_bytes=len(content),
                    width=64,
                    height=48,
                    is_tagged=number % 3 != 0 or number % 10 == 0,
                    created_by=user,
                )
            )
            labels.append(number)
        created = Image.objects.bulk_create(rows)
        regions, marks = [], []
        for image, number in zip(created, labels, strict=True):
            if number % 10 == 0:
                marks.append(ImageTag(image=image, tag=negative))
            elif number % 3 != 0:
                for box in range(1 + number % 2):
                    left, top = rng.uniform(0, 0.5, 2)
                    regions.append(
                        Region(
                            image=image,
                            tag=tags[(number + box) % 3],
                            left=float(left),
                            top=float(top),
                            width=float(rng.uniform(0.05, 0.5)),
                            height=float(rng.uniform(0.05, 0.5)),
                        )
                    )
        Region.objects.bulk_create(regions)
        ImageTag.objects.bulk_create(marks)
    return {"project_id": project.pk, "user_id": user.pk}


def child_export(data_dir: str, project_id: int, user_id: int, format_name: str) -> None:
    _setup(data_dir)
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from labeling.models import Project
    from labeling.services.export_jobs import run_export, start_export

    project = Project.objects.get(pk=project_id)
    user = get_user_model().objects.get(pk=user_id)
    # No broker here: the job's status is written, and rolling back the (empty) transaction
    # drops the enqueue; this process then plays the worker that would have got the message.
    with transaction.atomic():
        job = start_export(project=project, format_name=format_name, by=user)
        transaction.set_rollback(True)
    before = _rss_mb()
    started = time.perf_counter()
    job = run_export(project_id=project_id, job_id=job.job_id)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "state": job.state,
                "message": job.message,
                "images": job.images,
                "file": job.file,
                "size_bytes": job.size_bytes,
                "seconds": seconds,
                "rss_before_mb": before,
                "peak_mb": _peak_mb(),
                "hwm_mb": _hwm_mb(),
            }
        )
    )


def child_seed(data_dir: str, count: int) -> None:
    _setup(data_dir)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    world = seed(count)
    print(json.dumps({**world, "seconds": time.perf_counter() - started}))


def child_floor(media_root: str, out_dir: str) -> None:
    """The same image files into a zip with nothing else: what copying alone costs."""
    paths = sorted((Path(media_root) / "images" / "bench").iterdir())
    before = _rss_mb()
    started = time.perf_counter()
    with (
        tempfile.TemporaryFile(dir=out_dir) as out,
        zipfile.ZipFile(out, "w", allowZip64=True) as archive,
    ):
        for path in paths:
            archive.write(path, f"images/{path.name}", compress_type=zipfile.ZIP_STORED)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "images": len(paths),
                "seconds": seconds,
                "rss_before_mb": before,
                "peak_mb": _peak_mb(),
                "hwm_mb": _hwm_mb(),
            }
        )
    )


def _run_child(*args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"child {args[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_archive(path: Path, images: int) -> dict[str, int]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        bad = archive.testzip()  # reads every member and checks its CRC
        document = json.loads(archive.read("annotations.json"))
        manifest = json.loads(archive.read("loupe.json"))
    assert bad is None, f"bad member {bad}"
    assert sum(n.startswith("images/") for n in names) == images
    assert len(document["images"]) == images
    return {
        "members": len(names),
        "annotations": len(document["annotations"]),
        "negatives": len(manifest["negative_images"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--format", default="coco", choices=["coco", "voc", "yolo"])
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loupe-export-bench-") as data_dir:
        media_root = Path(data_dir) / "media"
        world = _run_child("--child-seed", data_dir, str(args.images))
        print(f"seeded {args.images:,} images in {float(world['seconds']):.0f} s")
        export = _run_child(
            "--child-export",
            data_dir,
            str(world["project_id"]),
            str(world["user_id"]),
            args.format,
        )
        assert export["state"] == "done", export["message"]
        floor = _run_child("--child-floor", str(media_root), data_dir)
        checked = check_archive(media_root / str(export["file"]), args.images)
        load = os.getloadavg()[0]
    report(args, export, floor, checked, load)


def report(
    args: argparse.Namespace,
    export: dict[str, object],
    floor: dict[str, object],
    checked: dict[str, int],
    load: float,
) -> None:
    rate = args.images / float(export["seconds"])  # type: ignore[arg-type]
    floor_rate = int(floor["images"]) / float(floor["seconds"])  # type: ignore[arg-type]
    peak = float(export["peak_mb"])  # type: ignore[arg-type]
    growth = peak - float(export["rss_before_mb"])  # type: ignore[arg-type]
    size_mb = int(export["size_bytes"]) / 1024**2  # type: ignore[call-overload]
    verdict = "meets" if peak < GOAL_MB else "MISSES"
    section = f"""### Dataset export with images: {args.images:,} images, {args.format.upper()} (bench/dataset_export.py)

Command: `{command_line()}`
Machine: {machine_line()}; 1-minute load average {load:.1f} at the end (other work shares the machine: compare the ratio, measured side by side). Images: 64x48 PNGs (~{size_mb * 1024 / args.images:.1f} kB each), two thirds with 1-2 boxes, one in ten "No objects". The export runs in a subprocess of its own through `run_export` (what the Celery task calls): labels read as tuples, each image copied from the default storage into the zip in 1 MB chunks, the zip written to a temporary file and then saved through the storage.

| path | seconds | images/s | peak RSS, ru_maxrss (MB) | VmHWM (MB) | RSS before (MB) |
|---|---|---|---|---|---|
| export job (`run_export`, {args.format}) | {float(export["seconds"]):.1f} | {rate:.0f} | {peak:.0f} | {float(export["hwm_mb"]):.0f} | {float(export["rss_before_mb"]):.0f} |
| floor: bare `zipfile` copy of the same files | {float(floor["seconds"]):.1f} | {floor_rate:.0f} | {float(floor["peak_mb"]):.0f} | {float(floor["hwm_mb"]):.0f} | {float(floor["rss_before_mb"]):.0f} |

- Export: **{rate:.0f} images/s**, {size_mb:.0f} MB archive; ratio to the floor {rate / floor_rate:.2f}.
- Peak RSS of the exporting process: **{peak:.0f} MB** ({verdict} the goal of < {GOAL_MB} MB); the export adds {growth:.0f} MB over the process with Django loaded.
- Archive checked: {checked["members"]:,} members, CRC of each verified, {checked["annotations"]:,} boxes, {checked["negatives"]:,} "No objects" images in the manifest.
"""
    print(section)
    if not args.no_record:
        append_result("Issue 12: data in and out", section)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-seed":
        child_seed(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-export":
        child_export(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-floor":
        child_floor(sys.argv[2], sys.argv[3])
    else:
        main()
