#!/usr/bin/env python3
"""Run a model exported from Loupe on image files; print the prediction API's JSON for each.

    python predict.py photo.jpg [more.jpg ...]

Needs only numpy, Pillow and onnxruntime (for model.onnx) or torch (for model.pt, the
TorchScript export; a detector's also needs torchvision, whose NMS operator it calls).
manifest.json beside this file says how the model was trained and how its input is prepared;
README.md spells the preprocessing out. The output of each image is one line of JSON shaped
as Loupe's (and Custom Vision's) prediction API answers:
{"id": null, "project": ..., "iteration": ..., "created": ..., "predictions": [...]}.

Loupe tests that this script and its own prediction API agree on the same images (probabilities
within 1e-4, boxes with IoU >= 0.99 and scores within 1e-3), so the preprocessing below copies
Loupe's exactly: change it and the guarantee no longer holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent

Runner = Callable[[np.ndarray], list[np.ndarray]]


def load_rgb(path: Path, draft_size: int | None) -> Image.Image:
    """Decode upright RGB. `draft_size`: let a JPEG decode at a reduced DCT scale while both
    sides stay at least that many pixels (Loupe's classifiers do; its detector does not)."""
    with Image.open(path) as image:
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        upright = ImageOps.exif_transpose(image)
        return upright.convert("RGB") if upright.mode != "RGB" else upright.copy()


def resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to `size` (bilinear, small images upscaled), centre square: uint8 (S, S, 3).
    Pillow resizes only the crop box, which is what Loupe does (not resize-then-crop)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    resized = image.resize(
        (size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
    )
    return np.asarray(resized, dtype=np.uint8)


def detector_size(width: int, height: int, shorter_px: int, longer_px: int) -> tuple[int, int]:
    """The (width, height) the detector sees: shorter side to `shorter_px` unless the longer
    side would pass `longer_px`."""
    scale = min(shorter_px / min(width, height), longer_px / max(width, height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def load_runner(manifest: dict[str, Any]) -> Runner:
    model_path = HERE / manifest["model_file"]
    if manifest["platform"] == "ONNX":
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        input_name = manifest["input"]["name"]

        def run_onnx(pixels: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(out) for out in session.run(None, {input_name: pixels})]

        return run_onnx
    import warnings

    import torch

    if manifest["type"] == "detection":
        import torchvision  # noqa: F401  # registers torchvision::nms, which the detector calls

    with warnings.catch_warnings():  # torch.jit is deprecated, yet still the portable format
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(model_path), map_location="cpu").eval()  # type: ignore[no-untyped-call]

    def run_torch(pixels: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = module(torch.from_numpy(np.array(pixels)))  # a writable copy
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [out.numpy() for out in outputs]

    return run_torch


def _tag_row(tag: dict[str, Any], probability: float) -> dict[str, Any]:
    return {
        "probability": round(probability, 6),
        "tagId": tag["id"],
        "tagName": tag["name"],
        "tagType": "Regular",
    }


def classify(manifest: dict[str, Any], run: Runner, path: Path) -> list[dict[str, Any]]:
    size = manifest["input"]["size_px"]
    pixels = resize_center_crop(load_rgb(path, draft_size=size), size)[None]
    probabilities = run(np.ascontiguousarray(pixels))[0][0]
    rows = [_tag_row(tag, float(probabilities[tag["index"]])) for tag in manifest["tags"]]
    rows.sort(key=lambda row: -row["probability"])  # stable: ties keep the tags' order
    return rows


def detect(manifest: dict[str, Any], run: Runner, path: Path) -> list[dict[str, Any]]:
    resize = manifest["resize"]
    image = load_rgb(path, draft_size=None)
    size = detector_size(*image.size, resize["shorter_side_px"], resize["max_longer_side_px"])
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    width, height = image.size
    boxes, scores, labels = run(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))
    order = np.argsort(-scores, kind="stable")
    scale = np.array([width, height, width, height], dtype=np.float64)
    normalized = np.clip(boxes[order].astype(np.float64) / scale, 0.0, 1.0)
    tags = manifest["tags"]
    rows = []
    for (x1, y1, x2, y2), score, label in zip(
        normalized, scores[order], labels[order], strict=True
    ):
        box_w, box_h = float(x2 - x1), float(y2 - y1)
        if box_w <= 0 or box_h <= 0 or int(label) >= len(tags):
            continue
        row = _tag_row(tags[int(label)], float(score))
        row["boundingBox"] = {
            "left": round(float(x1), 6),
            "top": round(float(y1), 6),
            "width": round(box_w, 6),
            "height": round(box_h, 6),
        }
        rows.append(row)
    rows.sort(key=lambda row: -row["probability"])
    return rows


def predict(manifest: dict[str, Any], run: Runner, path: Path) -> dict[str, Any]:
    """The prediction API's answer for one image (not stored, so "id" is null)."""
    predict_one = detect if manifest["type"] == "detection" else classify
    return {
        "id": None,
        "project": manifest["project"]["id"],
        "iteration": manifest["iteration"]["id"],
        "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),  # noqa: UP017
        "predictions": predict_one(manifest, run, path),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, ...)")
    args = parser.parse_args(argv)
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    run = load_runner(manifest)
    status = 0
    for path in args.images:
        try:
            answer = predict(manifest, run, path)
        except (OSError, ValueError) as err:  # unreadable file, not an image
            print(f"{path}: {err}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps(answer))
    return status


if __name__ == "__main__":
    sys.exit(main())
