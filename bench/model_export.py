"""Model export time (issue 12): lite0 and lite2 classifiers and the lite0 FCOS detector, to ONNX
and TorchScript, through `run_model_export` (what the Celery task `training.export_model` runs:
read the artifact from storage, convert, self-check, zip to a temporary file, save through the
default storage).

    .venv/bin/python bench/model_export.py [--record]
    .venv/bin/python bench/model_export.py --parity

`--parity` checks the issue's parity guarantee at real size instead of timing: a lite0 and a lite2
classifier (quick training on views of four photographs) and the production-size lite0 detector
(quick mode, a short budget on bench/detection_data.py scenes) are exported to ONNX through
`run_model_export`, unzipped, and their own predict.py runs in a subprocess (as a user would) on
20 generated files (sizes 40x30 to 2400x1600, aspect ratios 1:4 to 4:1, JPEG and PNG, one
EXIF-rotated; the detector also gets 4 unseen scenes). Its answers are compared with
predictions.services.predict.predict_bytes (what the prediction API calls): the largest
probability difference (bound 1e-4), and for detection the boxes matched one to one by tag and
IoU, the smallest IoU (bound 0.99), the largest score difference (bound 1e-3) and any box
either side has that the other lacks.

Side by side, for each model, the time the app takes to load the same artifact for prediction
(predictions.model_cache.LoadedModel, which builds its ONNX Runtime session the same way), so
the ratio says what an export costs next to something users already wait for. A fresh data
directory (SQLite, local media) is made and removed; weights are the packaged ImageNet ones with
a random head (conversion time does not depend on the values).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import append_result, command_line, machine_line


def _setup(data_dir: str) -> None:
    os.environ.update(
        LOUPE_DATA_DIR=data_dir,
        MEDIA_ROOT=str(Path(data_dir) / "media"),
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _classifier(backbone: str, tags: int) -> bytes:
    import torch

    from training.ml.artifact import ClassifierArtifact, save_artifact
    from training.ml.preprocessing import PREPROCESSING_VERSION

    artifact = ClassifierArtifact(
        backbone=backbone,
        multilabel=False,
        tag_keys=[f"tag{i}" for i in range(tags)],
        head_weight=torch.randn(tags + 1, 1280) * 0.05,
        head_bias=torch.zeros(tags + 1),
        backbone_state=None,
        preprocessing_version=PREPROCESSING_VERSION,
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


def _detector(tags: int) -> bytes:
    from training.ml.detection import (
        DetectorArtifact,
        DetectorConfig,
        build_detector,
        save_detector_artifact,
    )

    config = DetectorConfig()  # production sizes: shorter side 320, longer side at most 448
    model = build_detector("lite0", tags, config)
    buffer = io.BytesIO()
    save_detector_artifact(
        DetectorArtifact(backbone="lite0", num_tags=tags, config=config, state=model.state_dict()),
        buffer,
    )
    return buffer.getvalue()


def _iteration(  # type: ignore[no-untyped-def]
    kind: str, domain: str, backbone: str, payload: bytes, tags: int, names: Sequence[str] = ()
):
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from labeling.models import Membership, Project, Role, Tag
    from training.models import Iteration, IterationTag

    user = get_user_model().objects.get_or_create(username="bench")[0]
    project = Project.objects.create(
        name=f"Bench {backbone} {kind}", kind=kind, domain=domain, owner=user
    )
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    iteration = Iteration.objects.create(
        project=project, number=1, name="Iteration 1", status="completed", backbone=backbone
    )
    for index in range(tags):
        tag = Tag.objects.create(project=project, name=names[index] if names else f"tag{index}")
        IterationTag.objects.create(iteration=iteration, tag=tag, name=tag.name, index=index)
    iteration.artifact.save("model.pt", ContentFile(payload), save=True)
    # As training's end does: the prediction API then answers from the serving file, not from
    # the legacy torch path of iterations trained before serving files existed.
    from training.services.serving import build_serving_model

    assert build_serving_model(iteration.pk) == "done"
    return iteration


def _measure(iteration, platform: str) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from training.models import ModelExport
    from training.services.model_export import run_model_export

    # The row start_model_export would queue (its message would need a broker; the bench runs
    # the worker's side directly).
    export = ModelExport.objects.create(iteration=iteration, platform=platform)
    started = time.perf_counter()
    finished = run_model_export(export.pk)
    seconds = time.perf_counter() - started
    assert finished is not None and finished.status == "done", finished and finished.failure_message
    return seconds, finished.size_bytes


def _load_for_prediction(payload: bytes) -> float:
    from predictions.model_cache import LoadedModel

    started = time.perf_counter()
    LoadedModel(payload, threads=1)
    return time.perf_counter() - started


# --- Parity (issue 12): the exported ONNX model, run by its own predict.py, against the app ---

PARITY_PROBABILITY = 1e-4  # the bounds, not to be loosened
PARITY_IOU = 0.99
PARITY_SCORE = 1e-3
CLASS_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")  # bench.data.PHOTOS[:4]


def _photo(name: str):  # type: ignore[no-untyped-def]
    import skimage.data
    from PIL import Image

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def _parity_images(folder: Path) -> list[Path]:
    """20 files: the tags' photographs and off-class pictures at varied sizes and aspect ratios,
    JPEG (baseline, progressive, low quality, greyscale, one EXIF-rotated, one large enough to be
    drafted) and PNG (RGB, RGBA, palette, greyscale)."""
    import numpy as np
    from PIL import Image

    cat, coffee, rocket, astronaut = (_photo(name) for name in CLASS_PHOTOS)
    camera = _photo("camera").convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    half = (320, 240)
    noise = np.random.default_rng(3).integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    files = {
        "cat.jpg": (cat, {"quality": 90}),
        "coffee.png": (coffee, {}),
        "rocket-portrait.jpg": (rocket.resize((427, 640)), {"quality": 85}),
        "astronaut.png": (astronaut, {}),
        "cat-wide-4x1.jpg": (cat.crop((0, 60, 451, 173)).resize((1000, 250)), {}),
        "coffee-tall-1x4.png": (coffee.resize((120, 480)), {}),
        "cat-large-2400.jpg": (cat.resize((2400, 1600)), {"quality": 92}),
        "astronaut-tiny-40x30.jpg": (astronaut.resize((40, 30)), {}),
        "coffee-exif-rotated.jpg": (coffee.resize((480, 320)), {"exif": exif}),
        "camera-grey.png": (camera, {}),
        "camera-grey.jpg": (camera.resize((300, 300)), {}),
        "hubble.jpg": (_photo("hubble_deep_field").resize((500, 260)), {}),
        "brick-palette.png": (_photo("brick").quantize(64), {}),
        "astronaut-rgba.png": (_rgba(astronaut.resize((256, 320))), {}),
        "noise.png": (Image.fromarray(noise), {}),
        "solid-64.png": (Image.new("RGB", (64, 64), (40, 90, 200)), {}),
        "cat-coffee-blend.jpg": (Image.blend(cat.resize(half), coffee.resize(half), 0.5), {}),
        "coffee-q30.jpg": (coffee.resize((800, 600)), {"quality": 30}),
        "rocket-progressive.jpg": (rocket.resize((333, 500)), {"progressive": True}),
        "astronaut-rocket-side.png": (_side_by_side(astronaut, rocket), {}),
    }  # fmt: skip
    paths = []
    for name, (image, options) in files.items():
        path = folder / name
        image.save(path, **options)
        paths.append(path)
    return paths


def _rgba(image):  # type: ignore[no-untyped-def]
    rgba = image.convert("RGBA")
    rgba.putalpha(160)
    return rgba


def _side_by_side(left, right):  # type: ignore[no-untyped-def]
    from PIL import Image

    canvas = Image.new("RGB", (560, 300), (255, 255, 255))
    canvas.paste(left.resize((300, 300)), (0, 0))
    canvas.paste(right.resize((200, 300)), (330, 0))
    return canvas


def _trained_classifier(backbone: str, folder: Path) -> bytes:
    """Quick training as the app does it (frozen stock backbone, train_quick's linear head) on
    40 views of the four tag photographs."""
    from PIL import Image

    from bench.data import one_hot, photo_classes
    from training.ml.artifact import ClassifierArtifact, save_artifact
    from training.ml.features import embed_pil, stock_engine
    from training.ml.preprocessing import PREPROCESSING_VERSION
    from training.ml.quick import train_quick

    items = photo_classes(folder, images=40, classes=len(CLASS_PHOTOS), size=(320, 240))
    images = [Image.open(path) for path, _ in items]
    features = embed_pil(stock_engine(backbone, threads=1), images, backbone)
    result = train_quick(features, one_hot(items, len(CLASS_PHOTOS)), multilabel=False)
    artifact = ClassifierArtifact.from_quick(
        result.head,
        backbone=backbone,
        tag_keys=list(CLASS_PHOTOS),
        preprocessing_version=PREPROCESSING_VERSION,
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


def _trained_detector(folder: Path) -> tuple[bytes, tuple[str, ...], list[Path]]:
    """The production-size lite0 FCOS detector, quick mode (frozen backbone), trained for a
    short budget on 40 scenes of bench/detection_data.py; also 4 unseen scenes to predict."""
    from bench.data import refs_for
    from bench.detection_data import TAGS, generate
    from training.ml.detection import DetectorConfig, save_detector_artifact, train_detector

    samples = generate(folder / "train", images=40, seed=0)
    result = train_detector(
        refs_for([(sample.path, 0) for sample in samples]),
        [sample.boxes for sample in samples],
        num_tags=len(TAGS),
        backbone="lite0",
        budget_s=180,
        seed=0,
        config=DetectorConfig(),
    )
    buffer = io.BytesIO()
    save_detector_artifact(result.to_artifact(backbone="lite0", num_tags=len(TAGS)), buffer)
    unseen = [sample.path for sample in generate(folder / "unseen", images=4, seed=1)]
    return buffer.getvalue(), TAGS, unseen


def _run_shipped_predict(iteration, images: list[Path], folder: Path) -> list[dict]:  # type: ignore[no-untyped-def]
    """Export to ONNX through run_model_export, unzip, run its predict.py in a subprocess."""
    import json
    import subprocess
    import zipfile

    from training.models import ModelExport
    from training.services.model_export import run_model_export

    export = ModelExport.objects.create(iteration=iteration, platform="ONNX")
    finished = run_model_export(export.pk)
    assert finished is not None and finished.status == "done", finished and finished.failure_message
    with finished.file.open("rb") as stored, zipfile.ZipFile(stored) as archive:
        archive.extractall(folder)
    (script,) = folder.glob("*/predict.py")
    done = subprocess.run(
        [sys.executable, str(script), *map(str, images)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _in_app(iteration, images: list[Path]) -> list[list[dict]]:  # type: ignore[no-untyped-def]
    """What the prediction API answers: predictions.services.predict.predict_bytes."""
    from predictions.services.predict import predict_bytes, target_for

    target = target_for(iteration.project, iteration)
    return [predict_bytes(target, path.read_bytes())[1].results for path in images]


def _classification_gap(exported: list[dict], app: list[list[dict]]) -> dict:
    """Largest |probability difference| over every image and tag; tags and order must agree."""
    worst, same_tags = 0.0, True
    for answer, results in zip(exported, app, strict=True):
        ours = {row["tagName"]: row["probability"] for row in answer["predictions"]}
        theirs = {row["tagName"]: row["probability"] for row in results}
        same_tags &= ours.keys() == theirs.keys()
        worst = max([worst, *(abs(ours[t] - p) for t, p in theirs.items() if t in ours)])
    return {"max_dp": worst, "ok": same_tags and worst <= PARITY_PROBABILITY}


def _detection_gap(exported: list[dict], app: list[list[dict]], images: list[Path]) -> dict:
    """Match each in-app box to an exported box of its tag (best IoU, one to one) and report the
    smallest IoU, the largest score difference and the boxes left unmatched on either side."""
    import numpy as np

    from training.ml.detection_metrics import box_iou

    def xywh(row: dict) -> list[float]:
        box = row["boundingBox"]
        return [box["left"], box["top"], box["width"], box["height"]]

    ious, gaps, unmatched = [], [], []
    for path, answer, results in zip(images, exported, app, strict=True):
        free = list(answer["predictions"])
        counts = f"{len(results)} in app, {len(free)} exported"
        for row in results:
            same = [other for other in free if other["tagName"] == row["tagName"]]
            if not same:
                unmatched.append(("app", path.name, counts, row))
                continue
            overlap = box_iou(np.asarray([xywh(row)]), np.asarray([xywh(o) for o in same]))[0]
            best = int(np.argmax(overlap))
            ious.append(float(overlap[best]))
            gaps.append(abs(same[best]["probability"] - row["probability"]))
            free.remove(same[best])
        unmatched += [("export", path.name, counts, other) for other in free]
    min_iou = min(ious, default=1.0)
    max_ds = max(gaps, default=0.0)
    ok = not unmatched and min_iou >= PARITY_IOU and max_ds <= PARITY_SCORE
    return {
        "boxes": len(ious),
        "min_iou": min_iou,
        "max_ds": max_ds,
        "unmatched": unmatched,
        "ok": ok,
    }


def _parity_case(label: str, iteration, images: list[Path], folder: Path, detection: bool) -> dict:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    exported = _run_shipped_predict(iteration, images, folder / "zip")
    app = _in_app(iteration, images)
    gap = _detection_gap(exported, app, images) if detection else _classification_gap(exported, app)
    gap.update(label=label, images=len(images), seconds=time.perf_counter() - started)
    print(label, {k: v for k, v in gap.items() if k != "label"}, flush=True)
    return gap


def parity() -> list[dict]:
    """Train, export and compare the three real-size models; one dict of figures per model."""
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine
    folder = Path(tempfile.mkdtemp(prefix="loupe-bench-parity-"))
    try:
        images = _parity_images(folder)
        rows = []
        for backbone, domain in (("lite0", "general_compact"), ("lite2", "general")):
            payload = _trained_classifier(backbone, folder)
            iteration = _iteration(
                "multiclass", domain, backbone, payload, len(CLASS_PHOTOS), CLASS_PHOTOS
            )
            label = f"{backbone} classifier, quick training"
            rows.append(_parity_case(label, iteration, images, folder / backbone, False))
        payload, tags, scenes = _trained_detector(folder)
        iteration = _iteration("detection", "general_compact", "lite0", payload, len(tags), tags)
        label = "lite0 FCOS detector (320/448), quick mode"
        rows.append(_parity_case(label, iteration, images + scenes, folder / "det", True))
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _print_parity(rows: list[dict]) -> None:
    header = "compared | largest prob. / score diff | smallest IoU | unmatched boxes | bound met"
    print(f"\n| model | images | {header} |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "max_dp" in row:
            figures = f"all tags | {row['max_dp']:.2e} (bound 1e-4) | - | - "
        else:
            unmatched = (
                ", ".join(f"{side} {r['probability']:.3f}" for side, _, _, r in row["unmatched"])
                or "none"
            )
            figures = (
                f"{row['boxes']} boxes | {row['max_ds']:.2e} (bound 1e-3) | "
                f"{row['min_iou']:.4f} (bound 0.99) | {unmatched} "
            )
        print(f"| {row['label']} | {row['images']} | {figures}| {'yes' if row['ok'] else 'NO'} |")
    for row in rows:
        for side, name, counts, box in row.get("unmatched", []):
            print(f"{row['label']}: only {side}: {name} ({counts}): {box}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument(
        "--parity",
        action="store_true",
        help="instead of timing: the issue's parity guarantee on real-size trained models",
    )
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="loupe-bench-export-")
    if args.parity:
        try:
            _setup(data_dir)
            _print_parity(parity())
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    try:
        _setup(data_dir)
        import torch

        torch.manual_seed(0)
        cases = [
            ("lite0 classifier (General compact)", "multiclass", "general_compact", "lite0",
             _classifier("lite0", 5)),
            ("lite2 classifier (General)", "multiclass", "general", "lite2",
             _classifier("lite2", 5)),
            ("lite0 FCOS detector", "detection", "general_compact", "lite0", _detector(3)),
        ]  # fmt: skip
        rows = []
        for label, kind, domain, backbone, payload in cases:
            load_s = _load_for_prediction(payload)  # also warms the packaged weights' cache
            for platform in ("ONNX", "TorchScript"):
                iteration = _iteration(
                    kind, domain, backbone, payload, 5 if kind != "detection" else 3
                )
                seconds, size = _measure(iteration, platform)
                rows.append((label, platform, seconds, size, load_s))
                print(
                    f"{label:38} {platform:12} {seconds:6.1f} s  {size / 1e6:6.1f} MB  "
                    f"load for prediction {load_s:5.1f} s  ratio {seconds / load_s:4.1f}"
                )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.record:
        load = os.getloadavg()[0]
        table = "\n".join(
            f"| {label} | {platform} | {seconds:.1f} | {size / 1e6:.1f} | {load_s:.1f} | "
            f"{seconds / load_s:.1f} |"
            for label, platform, seconds, size, load_s in rows
        )
        append_result(
            "Issue 12: data in and out",
            f"""### Model export time (bench/model_export.py)

Command: `{command_line()}`
Machine: {machine_line()}; 1-minute load average {load:.1f} at the end (other work shares the
machine: compare the ratio, measured side by side). Measured: `run_model_export` (the Celery
task's body: artifact from storage, conversion, self-check against the eager model, zip to a
temporary file, saved through the default storage); beside it, loading the same artifact for
prediction (`predictions.model_cache.LoadedModel`, threads=1).

| model | platform | export (s) | zip (MB) | load for prediction (s) | ratio |
|---|---|---|---|---|---|
{table}""",
        )


if __name__ == "__main__":
    main()
