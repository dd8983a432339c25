"""Model export core: the zip's predict.py, run in a subprocess as a user would, agrees with the
in-app predictors (the ones the prediction API's model cache builds) on the same image files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from tests.ml.conftest import encode
from training.ml.artifact import ClassifierArtifact, Predictor, save_artifact
from training.ml.backbones import build_feature_extractor, get_backbone
from training.ml.detection import (
    DetectorConfig,
    DetectorPredictor,
    TrainOptions,
    save_detector_artifact,
    train_detector,
)
from training.ml.detection_metrics import box_iou
from training.ml.export import ExportMismatch, export_model
from training.ml.export_manifest import ONNX_OPSET, ExportInfo, ExportTag
from training.ml.preprocessing import PREPROCESSING_VERSION, load_rgb

TAGS = ("cat", "coffee", "rocket")
TINY_DETECTOR = DetectorConfig(image_size_px=96, max_size_px=128, train_scales=(1.0,))

# Run predict.py with torch, torchvision, timm and Loupe's own packages made unimportable: an
# ONNX export must need only numpy, Pillow and onnxruntime.
_BLOCKED_RUN = textwrap.dedent(
    """
    import runpy, sys
    BLOCKED = ("torch", "torchvision", "timm", "training", "django", "labeling", "predictions")
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not allowed in an exported model's predict.py")
    sys.meta_path.insert(0, Block())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


def _info(tags=TAGS, *, kind="multiclass", threshold=0.65) -> ExportInfo:
    return ExportInfo(
        project_id=4,
        project_name="Shop shelves",
        project_kind=kind,
        domain="general_compact",
        iteration_id=17,
        iteration_number=3,
        iteration_name="Iteration 3",
        published_name="prod",
        training_type="quick",
        threshold=threshold,
        tags=tuple(ExportTag(i, 100 + i if i != 1 else None, name) for i, name in enumerate(tags)),
        loupe_version="0.1.0",
        exported_at="2026-12-07T03:00:00Z",
    )


def _classifier(backbone: str, *, multilabel: bool, fine_tuned: bool) -> ClassifierArtifact:
    generator = torch.Generator().manual_seed(3)
    rows = len(TAGS) + (0 if multilabel else 1)
    state = None
    if fine_tuned:  # advanced training ships its own backbone weights: perturb the stock ones
        state = build_feature_extractor(backbone).state_dict()
        state["conv_stem.weight"] = state["conv_stem.weight"] * 1.1
    return ClassifierArtifact(
        backbone=backbone,
        multilabel=multilabel,
        tag_keys=list(TAGS),
        head_weight=torch.randn(rows, get_backbone(backbone).feature_dim, generator=generator)
        * 0.08,
        head_bias=torch.randn(rows, generator=generator) * 0.1,
        backbone_state=state,
        preprocessing_version=PREPROCESSING_VERSION,
    )


def _payload(artifact: ClassifierArtifact) -> bytes:
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


def _image_files(folder: Path) -> list[Path]:
    """JPEGs larger than the input (DCT draft), a small PNG (upscaled), an EXIF-rotated JPEG,
    greyscale and RGBA PNGs, a wide panorama."""
    cat = Image.fromarray(skimage.data.chelsea())
    coffee = Image.fromarray(skimage.data.coffee())
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    coffee.save(rotated, format="JPEG", quality=90, exif=exif)
    files = {
        "cat.jpg": encode(cat, quality=90),
        "coffee-small.png": encode(coffee.resize((40, 30)), "PNG"),
        "coffee-rotated.jpg": rotated.getvalue(),
        "grey.png": encode(cat.convert("L").resize((120, 90)), "PNG"),
        "rgba.png": encode(coffee.convert("RGBA").resize((90, 120)), "PNG"),
        "panorama.jpg": encode(cat.resize((500, 90)), quality=85),
    }
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def _run_predict(zip_bytes: bytes, folder: Path, images: list[Path], *, blocked: bool) -> list:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        archive.extractall(folder)
    (script,) = folder.glob("*/predict.py")
    command = (
        [sys.executable, "-c", _BLOCKED_RUN, str(script)]
        if blocked
        else [
            sys.executable,
            str(script),
        ]
    )
    done = subprocess.run(
        [*command, *map(str, images)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize(
    ("platform", "multilabel", "fine_tuned"),
    [
        ("ONNX", False, False),
        ("ONNX", True, False),
        ("ONNX", False, True),
        ("TorchScript", True, False),
    ],
)
def test_exported_classifier_predicts_as_the_app(
    tiny_backbone, tmp_path, platform, multilabel, fine_tuned
):
    artifact = _classifier(tiny_backbone, multilabel=multilabel, fine_tuned=fine_tuned)
    images = _image_files(tmp_path)
    out = io.BytesIO()
    phases: list[tuple[float, str]] = []
    result = export_model(
        _payload(artifact),
        _info(kind="multilabel" if multilabel else "multiclass"),
        platform,
        out,
        on_progress=lambda fraction, phase: phases.append((fraction, phase)),
    )

    answers = _run_predict(
        out.getvalue(), tmp_path / "unzipped", images, blocked=platform == "ONNX"
    )

    # The in-app model: what predictions.model_cache builds and run_model feeds (JPEG drafted
    # to the input size, EXIF upright).
    app = Predictor(artifact)
    size = 64
    expected = app.predict([load_rgb(path.read_bytes(), draft_size=size) for path in images])
    assert len(answers) == len(images)
    for answer, probabilities in zip(answers, expected, strict=True):
        assert answer["id"] is None and answer["project"] == 4 and answer["iteration"] == 17
        assert answer["created"].endswith("Z")
        rows = answer["predictions"]
        assert [row["probability"] for row in rows] == sorted(
            (row["probability"] for row in rows), reverse=True
        )
        assert {row["tagName"] for row in rows} == set(TAGS)
        for row in rows:
            index = TAGS.index(row["tagName"])
            assert row["tagId"] == (None if index == 1 else 100 + index)
            assert row["tagType"] == "Regular"
            assert abs(row["probability"] - float(probabilities[index])) <= 1e-4
    assert phases[-1] == (1.0, "Done")
    assert [fraction for fraction, _ in phases] == sorted(fraction for fraction, _ in phases)
    manifest = result.manifest
    assert manifest["platform"] == platform
    assert manifest["onnx_opset"] == (ONNX_OPSET if platform == "ONNX" else None)
    assert [tag["name"] for tag in manifest["tags"]] == list(TAGS)
    assert manifest["classification_type"] == ("Multilabel" if multilabel else "Multiclass")
    assert manifest["threshold"] == 0.65
    assert manifest["input"]["dtype"] == "uint8" and manifest["input"]["layout"] == "NHWC"


def test_export_zip_holds_model_manifest_readme_and_predict(tiny_backbone):
    out = io.BytesIO()
    result = export_model(
        _payload(_classifier(tiny_backbone, multilabel=False, fine_tuned=False)),
        _info(),
        "ONNX",
        out,
    )
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as archive:
        names = sorted(archive.namelist())
        manifest = json.loads(archive.read(f"{result.folder}/manifest.json"))
        readme = archive.read(f"{result.folder}/README.md").decode()
    assert result.folder == "shop-shelves-iteration-3-onnx"
    assert names == sorted(
        f"{result.folder}/{name}"
        for name in ("model.onnx", "manifest.json", "README.md", "predict.py")
    )
    assert manifest["project"] == {"id": 4, "name": "Shop shelves", "domain": "general_compact"}
    assert manifest["iteration"]["name"] == "Iteration 3"
    assert manifest["training_type"] == "quick" and manifest["backbone"] == tiny_backbone
    assert manifest["loupe_version"] == "0.1.0"
    assert manifest["normalization"]["mean"] == [0.5, 0.5, 0.5]
    assert manifest["resize"]["method"] == "shorter_side_then_center_crop"
    assert "draft" in readme and "exif_transpose" in readme and "0.65" in readme


def test_tags_that_do_not_match_the_model_are_refused(tiny_backbone):
    payload = _payload(_classifier(tiny_backbone, multilabel=False, fine_tuned=False))
    with pytest.raises(ValueError, match="outputs"):
        export_model(payload, _info(tags=("cat", "coffee")), "ONNX", io.BytesIO())
    with pytest.raises(ValueError, match="platform"):
        export_model(payload, _info(), "CoreML", io.BytesIO())  # type: ignore[arg-type]


def test_a_model_that_exports_differently_fails_its_self_check(tiny_backbone, monkeypatch):
    # A converter that drifts (here: the runner sees other pixels than the trained model) is
    # caught before anything is packaged.
    import training.ml.export as export_module

    real = export_module.onnx_runner

    def drifting(model: bytes):
        run = real(model)
        return lambda pixels: run(np.ascontiguousarray(255 - pixels))

    monkeypatch.setattr(export_module, "onnx_runner", drifting)
    payload = _payload(_classifier(tiny_backbone, multilabel=False, fine_tuned=False))
    with pytest.raises(ExportMismatch):
        export_model(payload, _info(), "ONNX", io.BytesIO())


@pytest.fixture(scope="module")
def detector_payload() -> bytes:
    """A detector trained for a few epochs on pasted cats and rockets (tests/ml/test_detection's
    toy set), so it makes confident boxes."""
    from tests.ml.test_detection import _toy_dataset

    refs, boxes = _toy_dataset()
    torch.set_num_threads(1)
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
    buffer = io.BytesIO()
    save_detector_artifact(result.to_artifact(backbone="lite0", num_tags=2), buffer)
    return buffer.getvalue()


def _toy_files(folder: Path) -> list[Path]:
    from tests.ml.test_detection import _toy_dataset

    refs, _ = _toy_dataset(seed=5)
    paths = []
    for index, ref in enumerate(refs[:6]):
        path = folder / f"toy-{index}.jpg"
        path.write_bytes(ref.open().read())
        paths.append(path)
    # Other sizes and shapes than training's: upscaled, capped by the longer side, rotated.
    first = Image.open(paths[0])
    for name, image in {
        "big.png": first.resize((256, 192)),
        "tall.jpg": first.rotate(90, expand=True).resize((96, 200)),
    }.items():
        path = folder / name
        image.save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("platform", ["ONNX", "TorchScript"])
def test_exported_detector_finds_the_same_boxes_as_the_app(detector_payload, tmp_path, platform):
    from training.ml.export import load_model_artifact

    images = _toy_files(tmp_path)
    out = io.BytesIO()
    export_model(detector_payload, _info(("cat", "rocket"), kind="detection"), platform, out)

    answers = _run_predict(
        out.getvalue(), tmp_path / "unzipped", images, blocked=platform == "ONNX"
    )

    app = DetectorPredictor(load_model_artifact(detector_payload))  # type: ignore[arg-type]
    # One image per call, as the prediction API runs it: a batch pads its images to a common
    # size, which moves boxes near the edges of the smaller ones.
    expected = [app.predict([load_rgb(path.read_bytes())])[0] for path in images]
    assert sum(len(found) for found in expected) >= len(images)  # the test has boxes to compare
    for answer, found in zip(answers, expected, strict=True):
        assert_same_boxes(answer["predictions"], found, ("cat", "rocket"))


def assert_same_boxes(
    rows: list[dict], found: list, tags: tuple[str, ...], *, ties: bool = True
) -> None:
    """Each expected box has an answer of its tag at IoU >= 0.99, score within 1e-3, one to one
    (matched by overlap, not by order: two near-equal scores may swap).

    Two ties, both seen in CI on the toy detector, where float noise decides between
    candidates of equal score:
    - the merge step (non-maximum suppression, IoU `nms_iou`) keeps one of two overlapping
      candidates of one tag: a pair of that tag, scores within 1e-3, overlapping past `nms_iou`
      is the same object (0.311265 on both sides, IoU 0.55); at most one such pair an image;
    - when the answer holds `max_detections` boxes (an undertrained detector fills the cap), the
      last places go by score: only the boxes clearly above the cut (1e-3) are compared, both
      ways.
    Both are float noise between eager PyTorch and an exported graph; `ties=False` allows
    neither (two runs of one graph)."""
    assert len(rows) == len(found)
    config = DetectorConfig()
    merge_ties = 0
    floor = 0.0
    if ties and len(found) >= config.max_detections:
        floor = max(min(f[1] for f in found), min(r["probability"] for r in rows)) + 1e-3
    unused = list(range(len(rows)))
    for tag, probability, *box in found:
        if probability < floor:
            continue
        best, best_iou = None, -1.0
        for index in unused:
            row = rows[index]
            if row["tagName"] != tags[tag]:
                continue
            ours = row["boundingBox"]
            iou = box_iou(
                np.asarray([[ours["left"], ours["top"], ours["width"], ours["height"]]]),
                np.asarray([box]),
            )[0, 0]
            if iou > best_iou:
                best, best_iou = index, iou
        assert best is not None, (tag, probability, box)
        assert abs(rows[best]["probability"] - probability) <= 1e-3, (tag, probability, box)
        if best_iou < 0.99:  # the other candidate of a merge tie, or a real difference
            merge_ties += 1
            assert ties and best_iou >= config.nms_iou and merge_ties <= 1, (tag, probability, box)
        unused.remove(best)
    # Nothing clearly above the cut is the export's alone.
    assert all(rows[index]["probability"] < floor + 1e-3 for index in unused)


def test_detector_manifest_states_the_resize_rule(detector_payload):
    result = export_model(
        detector_payload, _info(("cat", "rocket"), kind="detection"), "ONNX", io.BytesIO()
    )
    manifest = result.manifest
    assert manifest["type"] == "detection"
    assert manifest["input"]["layout"] == "HWC" and manifest["input"]["dtype"] == "uint8"
    assert manifest["resize"]["shorter_side_px"] == 96
    assert manifest["resize"]["max_longer_side_px"] == 128
    assert [output["name"] for output in manifest["outputs"]] == ["boxes", "scores", "labels"]
