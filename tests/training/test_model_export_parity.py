"""The parity guarantee, end to end: an iteration exported through the API and the worker task,
downloaded, unzipped and run by its own predict.py in a subprocess (as a user would) answers as
the in-app prediction service the prediction API calls (predictions.services.predict):
probabilities within 1e-4; for detection the same boxes (IoU >= 0.99), scores within 1e-3."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import skimage.data
import torch
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from labeling.models import Project
from predictions.services.predict import predict_bytes, target_for
from tests.factories import ProjectFactory, TagFactory
from tests.ml.test_export import assert_same_boxes
from tests.predictions.conftest import TINY_BACKBONE, colour_artifact, colour_iteration  # noqa: F401
from tests.streaming import body_of
from tests.training.conftest import make_iteration
from training.ml.artifact import ClassifierArtifact, save_artifact
from training.ml.backbones import get_backbone
from training.ml.preprocessing import PREPROCESSING_VERSION
from training.services.serving import build_serving_model
from training.tasks_model_export import export_model_task

pytestmark = pytest.mark.django_db


def _photos(folder: Path) -> list[Path]:
    cat = Image.fromarray(skimage.data.chelsea())
    coffee = Image.fromarray(skimage.data.coffee())
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: rotate 90° counter-clockwise to view
    files = {"cat.jpg": (cat, {"quality": 90}), "coffee-rotated.jpg": (coffee, {"exif": exif})}
    files["red-small.png"] = (Image.new("RGB", (24, 18), (220, 30, 30)), {})
    files["green.png"] = (Image.new("RGB", (70, 50), (30, 200, 40)), {})
    paths = []
    for name, (image, options) in files.items():
        path = folder / name
        image.save(path, **options)
        paths.append(path)
    return paths


def _served(iteration) -> None:
    """Write the iteration's serving file as training's end does: the prediction service then
    answers from it, as for every iteration trained today (without it, from the legacy torch
    model, whose float noise against ONNX Runtime decides the toy detector's score ties)."""
    assert build_serving_model(iteration.pk) == "done"


def _export_and_run(admin, iteration, platform: str, images: list[Path], folder: Path) -> list:
    """POST the export, run the worker's task, download the zip, run its predict.py."""
    client = APIClient()
    client.force_authenticate(admin)
    url = reverse("api-model-export-list", args=[iteration.project_id, iteration.pk])
    started = client.post(url, {"platform": platform}, format="json")
    assert started.status_code == 202, started.json()
    assert export_model_task(started.json()["id"]) == "done"
    (listed,) = client.get(url).json()
    download = client.get(listed["download_url"])
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(body_of(download))) as archive:
        archive.extractall(folder)
    (script,) = folder.glob("*/predict.py")
    done = subprocess.run(
        [sys.executable, str(script), *map(str, images)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _multilabel_artifact() -> bytes:
    generator = torch.Generator().manual_seed(5)
    artifact = ClassifierArtifact(
        backbone=TINY_BACKBONE,
        multilabel=True,
        tag_keys=["red", "green", "blue"],
        head_weight=torch.randn(3, get_backbone(TINY_BACKBONE).feature_dim, generator=generator)
        * 0.1,
        head_bias=torch.zeros(3),
        backbone_state=None,
        preprocessing_version=PREPROCESSING_VERSION,
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "platform"),
    [("multiclass", "ONNX"), ("multilabel", "ONNX"), ("multiclass", "TorchScript")],
)
def test_exported_classifier_answers_as_the_prediction_service(
    users,
    colour_artifact,  # noqa: F811
    tmp_path,
    kind,
    platform,
):
    project = ProjectFactory(kind=kind)
    project.memberships.create(user=users["admin"], role="admin")
    tags = [TagFactory(project=project, name=name) for name in ("red", "green", "blue")]
    artifact = colour_artifact if kind == "multiclass" else _multilabel_artifact()
    iteration = colour_iteration(project, tags, artifact)
    _served(iteration)
    images = _photos(tmp_path)

    answers = _export_and_run(users["admin"], iteration, platform, images, tmp_path / "zip")

    target = target_for(project, iteration)
    for path, answer in zip(images, answers, strict=True):
        _, outcome = predict_bytes(target, path.read_bytes())
        assert answer["project"] == project.pk and answer["iteration"] == iteration.pk
        ours = answer["predictions"]
        assert [(r["tagId"], r["tagName"], r["tagType"]) for r in ours] == [
            (r["tagId"], r["tagName"], r["tagType"]) for r in outcome.results
        ], path.name
        for mine, theirs in zip(ours, outcome.results, strict=True):
            assert abs(mine["probability"] - theirs["probability"]) <= 1e-4, path.name


@pytest.fixture(scope="module")
def detector_artifact() -> bytes:
    from tests.ml.test_detection import _toy_dataset
    from tests.ml.test_export import TINY_DETECTOR
    from training.ml.detection import TrainOptions, save_detector_artifact, train_detector

    refs, boxes = _toy_dataset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_detector(
            refs,
            boxes,
            num_tags=2,
            backbone="lite0",
            budget_s=600,
            seed=0,
            config=TINY_DETECTOR,
            options=TrainOptions(max_epochs=8, lr=3e-3, batch_size=4),
        )
    finally:
        torch.set_num_threads(threads)
    buffer = io.BytesIO()
    save_detector_artifact(result.to_artifact(backbone="lite0", num_tags=2), buffer)
    return buffer.getvalue()


def test_exported_detector_finds_the_boxes_of_the_prediction_service(
    users, detector_artifact, tmp_path
):
    from tests.ml.test_detection import _toy_dataset

    project = ProjectFactory(kind=Project.Kind.DETECTION)
    project.memberships.create(user=users["admin"], role="admin")
    tags = [TagFactory(project=project, name=name) for name in ("cat", "rocket")]
    iteration = make_iteration(project, tags=("cat", "rocket"))
    for it_tag, tag in zip(iteration.tags.order_by("index"), tags, strict=True):
        it_tag.tag = tag
        it_tag.save(update_fields=["tag"])
    iteration.artifact.save("model.pt", ContentFile(detector_artifact), save=True)
    _served(iteration)
    refs, _ = _toy_dataset(seed=7)
    images = []
    for index, ref in enumerate(refs[:5]):
        path = tmp_path / f"toy-{index}.jpg"
        path.write_bytes(ref.open().read())
        images.append(path)
    wide = tmp_path / "wide.png"
    Image.open(images[0]).resize((300, 120)).save(wide)  # capped by the longer side
    images.append(wide)

    answers = _export_and_run(users["admin"], iteration, "ONNX", images, tmp_path / "zip")

    target = target_for(project, iteration)
    compared = 0
    for path, answer in zip(images, answers, strict=True):
        _, outcome = predict_bytes(target, path.read_bytes())
        found = [
            (
                ("cat", "rocket").index(row["tagName"]),
                row["probability"],
                *(row["boundingBox"][k] for k in ("left", "top", "width", "height")),
            )
            for row in outcome.results
        ]
        # One ONNX graph on both sides (the serving file's and the export's): no float tie
        # can fall differently, so no tie allowance either.
        assert_same_boxes(answer["predictions"], found, ("cat", "rocket"), ties=False)
        compared += len(found)
    assert compared >= len(images)  # boxes were there to compare
