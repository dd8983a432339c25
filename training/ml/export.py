"""Export a trained iteration as a zip a user can run without Loupe: ONNX or TorchScript.

The zip holds one folder with the model, `manifest.json` (tags in output order, input, resize
rule, normalisation, threshold, provenance), a README that spells the preprocessing out (both
written by export_manifest), and `predict.py` (export_kit/predict.py), which needs only numpy,
Pillow and onnxruntime (or torch for TorchScript) and prints the prediction API's JSON.

Parity with the in-app prediction is by construction: the exported graph is the same modules
the app runs (the backbone with its normalisation folded in as in inference.PixelInput, the
linear head with its softmax or sigmoid; the whole torchvision detector with its own resize
check, NMS and box decoding), and predict.py repeats the app's decoding and resizing with
Pillow. Every export is checked before it is packaged: the exported model and the eager
PyTorch model must agree on a test input (CHECK_* tolerances), so a converter bug fails the
job with a reason instead of shipping a model that predicts differently.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .detection import DetectorArtifact
from .export_graphs import (
    ExportMismatch,
    check_input,
    classifier_module,
    detector_module,
    example_input,
    load_model_artifact,
    onnx_graph_bytes,
    onnx_runner,
    self_check,
    torchscript_graph_bytes,
    torchscript_runner,
)
from .export_manifest import ExportInfo, Platform, build_manifest, readme

__all__ = ["PLATFORMS", "ExportMismatch", "ExportResult", "export_model", "load_model_artifact"]

PLATFORMS: tuple[Platform, ...] = ("ONNX", "TorchScript")
KIT_DIR = Path(__file__).resolve().parent / "export_kit"


@dataclass(frozen=True)
class ExportResult:
    folder: str  # the zip's top folder
    model_file: str
    model_bytes: int
    manifest: dict[str, Any]


def export_model(
    payload: bytes,
    info: ExportInfo,
    platform: Platform,
    destination: BinaryIO,
    *,
    on_progress: Callable[[float, str], None] = lambda fraction, phase: None,
) -> ExportResult:
    """Write the export zip of the artifact file `payload` to `destination`.

    Raises ValueError when `info.tags` does not match the model's outputs or `platform` is not
    one of PLATFORMS, ExportMismatch when the exported model fails its self-check.
    """
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, not {platform!r}.")
    on_progress(0.05, "Loading the trained model")
    artifact = load_model_artifact(payload)
    is_detector = isinstance(artifact, DetectorArtifact)
    outputs = (
        artifact.num_tags if isinstance(artifact, DetectorArtifact) else len(artifact.tag_keys)
    )
    if sorted(tag.index for tag in info.tags) != list(range(outputs)):
        raise ValueError(f"info.tags must name the model's {outputs} outputs (indexes 0..N-1).")
    module = (
        detector_module(artifact)
        if isinstance(artifact, DetectorArtifact)
        else classifier_module(artifact)
    )
    example = example_input(artifact)
    on_progress(0.15, f"Converting to {platform}")
    if platform == "ONNX":
        model_file, model = "model.onnx", onnx_graph_bytes(module, example, is_detector=is_detector)
        run = onnx_runner(model)
    else:
        model_file, model = "model.pt", torchscript_graph_bytes(module, example)
        run = torchscript_runner(model)
    on_progress(0.7, "Checking the exported model against the trained one")
    self_check(module, run, check_input(artifact), is_detector=is_detector)
    on_progress(0.85, "Packaging")
    manifest = build_manifest(artifact, info, platform, model_file)
    folder = _folder_name(info, platform)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}/{model_file}", model)
        archive.writestr(f"{folder}/manifest.json", json.dumps(manifest, indent=2) + "\n")
        archive.writestr(f"{folder}/README.md", readme(manifest))
        archive.writestr(f"{folder}/predict.py", (KIT_DIR / "predict.py").read_text("utf-8"))
    on_progress(1.0, "Done")
    return ExportResult(folder, model_file, len(model), manifest)


def _folder_name(info: ExportInfo, platform: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", info.project_name.lower()).strip("-")[:40] or "project"
    return f"{slug}-iteration-{info.iteration_number}-{platform.lower()}"
