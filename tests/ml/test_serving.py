"""The web process's serving model (ONNX Runtime, no torch) stores what the torch model did.

For each kind of iteration (multiclass, multilabel; quick: stock backbone, advanced: its own
backbone weights; detection with the flip pass), the serving file written by the worker
(training.ml.serving_build) and the torch model the web process used before
(training.ml.torch_model.LoadedModel) run on the same decoded images, then through the same
scoring (predictions.services.predict.score_output): probabilities within 1e-4, embeddings
within 1e-4 of their scale, uncertainty within 1e-4, boxes IoU >= 0.99, and the Most-gain
order over the set is the same.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from predictions.services.predict import Target, TargetTag, score_output
from tests.ml.test_export import (  # the export tests' models and images: one test set
    TAGS,
    _classifier,
    _image_files,
    _payload,
    _toy_files,
    detector_payload,  # noqa: F401  (a fixture)
)
from training.ml.backbones import get_backbone
from training.ml.decode import load_rgb
from training.ml.detection_metrics import box_iou
from training.ml.export import load_model_artifact
from training.ml.ranking import compact_embeddings, rank_for_review
from training.ml.serving import ServingModel
from training.ml.serving_build import build_serving, build_stock_graph
from training.ml.torch_model import LoadedModel


def _serving(artifact) -> ServingModel:
    """The serving model as the web process gets it, the stock graph read from `shared`."""
    payload, stock = build_serving(artifact)
    shared = {stock: build_stock_graph(artifact.backbone)} if stock else {}
    return ServingModel(payload, read=shared.__getitem__, threads=1)


def _target(tags, *, detection=False, multilabel=False) -> Target:
    return Target(
        project_id=1,
        is_detection=detection,
        is_multilabel=multilabel,
        iteration_id=1,
        artifact_name="iterations/1/model.pt",
        threshold=0.5,
        tags=tuple(TargetTag(i, 10 + i, name) for i, name in enumerate(tags)),
        check_flip=detection,
    )


def _same_row(now: dict, was: dict) -> bool:
    if now["tagId"] != was["tagId"] or abs(now["probability"] - was["probability"]) > 1e-4:
        return False
    if "boundingBox" not in was:
        return True
    boxes = (
        np.array([[b["left"], b["top"], b["width"], b["height"]] for b in (now["boundingBox"],)]),
        np.array([[b["left"], b["top"], b["width"], b["height"]] for b in (was["boundingBox"],)]),
    )
    return float(box_iou(*boxes)[0, 0]) >= 0.99


def _most_gain(outcomes) -> list[int]:
    ranking = rank_for_review(
        compact_embeddings(np.stack([o.embedding for o in outcomes])),
        np.array([o.uncertainty for o in outcomes]),
        weight=0.7,
        k=len(outcomes),
        batch=4,
        seed=3,
        min_cluster_size=1,
    )
    return [int(i) for i in ranking.order]


def _compare(payload: bytes, paths: list[Path], target: Target, draft: int | None) -> None:
    old = LoadedModel(payload, threads=1)
    new = _serving(load_model_artifact(payload))
    assert new.input_size == old.input_size and new.tag_count == old.tag_count
    old_outcomes, new_outcomes = [], []
    for path in paths:
        image = load_rgb(path.read_bytes(), draft_size=draft)
        mirror = target.check_flip
        old_outcomes.append(score_output(target, old.run(image, mirror=mirror)))
        new_outcomes.append(score_output(target, new.run(image, mirror=mirror)))
    for was, now in zip(old_outcomes, new_outcomes, strict=True):
        np.testing.assert_allclose(now.probabilities, was.probabilities, atol=1e-4)
        scale = float(np.abs(was.embedding).max())
        assert float(np.abs(now.embedding - was.embedding).max()) <= 1e-4 * scale
        assert abs(now.uncertainty - was.uncertainty) <= 1e-4
        assert len(now.results) == len(was.results)
        # Each stored row has its twin (ties within 1e-4 may swap places in the sorted list).
        unmatched = list(now.results)
        for row_was in was.results:
            twin = next(row for row in unmatched if _same_row(row, row_was))
            unmatched.remove(twin)
        if was.flip_disagreement is not None:
            assert now.flip_disagreement is not None
            assert abs(now.flip_disagreement - was.flip_disagreement) <= 1e-3
    assert _most_gain(new_outcomes) == _most_gain(old_outcomes)


@pytest.mark.parametrize(
    ("multilabel", "fine_tuned"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["multiclass-quick", "multilabel-quick", "multiclass-advanced", "multilabel-advanced"],
)
def test_a_classifier_serves_what_the_torch_model_did(
    tiny_backbone, tmp_path, multilabel, fine_tuned
):
    artifact = _classifier(tiny_backbone, multilabel=multilabel, fine_tuned=fine_tuned)
    paths = _image_files(tmp_path)
    _compare(_payload(artifact), paths, _target(TAGS, multilabel=multilabel), draft=64)


def test_a_detector_serves_what_the_torch_model_did(detector_payload, tmp_path):  # noqa: F811
    paths = _toy_files(tmp_path)
    _compare(detector_payload, paths, _target(("cat", "rocket"), detection=True), draft=None)


@pytest.mark.parametrize("fine_tuned", [False, True], ids=["quick", "advanced"])
def test_the_serving_model_runs_without_torch(tiny_backbone, tmp_path, fine_tuned):
    """A fresh interpreter loads the serving file and predicts; torch is never imported."""
    artifact = _classifier(tiny_backbone, multilabel=False, fine_tuned=fine_tuned)
    payload, stock = build_serving(artifact)
    (tmp_path / "serving.zip").write_bytes(payload)
    if stock:
        (tmp_path / "stock.onnx").write_bytes(build_stock_graph(artifact.backbone))
    (image,) = _image_files(tmp_path)[:1]
    script = textwrap.dedent(
        f"""
        import sys
        from training.ml.decode import load_rgb
        from training.ml.serving import ServingModel
        model = ServingModel(
            open({str(tmp_path / "serving.zip")!r}, "rb").read(),
            read=lambda name: open({str(tmp_path / "stock.onnx")!r}, "rb").read(),
        )
        output = model.run(load_rgb(open({str(image)!r}, "rb").read(), draft_size=64))
        assert output.probabilities.shape == (3,), output.probabilities.shape
        assert output.embedding.shape == ({get_backbone(tiny_backbone).feature_dim},)
        print("torch" in sys.modules, "timm" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_a_damaged_serving_file_is_refused(tiny_backbone):
    with pytest.raises(Exception):  # noqa: B017  (zipfile's or our own ValueError)
        ServingModel(b"not a zip", read=bytes)
    payload = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("manifest.json", '{"format": "other", "version": 1}')
    with pytest.raises(ValueError, match="serving file"):
        ServingModel(payload.getvalue(), read=bytes)
