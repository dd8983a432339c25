"""What a model export says about its model: `manifest.json` (tags in output order, input,
resize rule, normalisation, threshold, provenance; predict.py reads it) and the README.md that
spells the preprocessing out. training.ml.export builds the model and packages both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .artifact import ClassifierArtifact
from .backbones import get_backbone
from .detection import DetectorArtifact

Platform = Literal["ONNX", "TorchScript"]
ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportTag:
    index: int  # the model's output column (classification) or label (detection)
    tag_id: int | None  # None when the tag was deleted after training
    name: str


@dataclass(frozen=True)
class ExportInfo:
    """What the manifest says about where the model comes from."""

    project_id: int
    project_name: str
    project_kind: str  # "multiclass" | "multilabel" | "detection"
    domain: str
    iteration_id: int
    iteration_number: int
    iteration_name: str
    published_name: str
    training_type: str  # "quick" | "advanced"
    threshold: float  # the probability threshold saved on the performance page
    tags: tuple[ExportTag, ...]
    loupe_version: str
    exported_at: str  # ISO 8601


def build_manifest(
    artifact: ClassifierArtifact | DetectorArtifact,
    info: ExportInfo,
    platform: Platform,
    model_file: str,
) -> dict[str, Any]:
    """The manifest.json of an export (predict.py reads it; README.md explains it)."""
    common = _common_fields(artifact, info, platform, model_file)
    if isinstance(artifact, DetectorArtifact):
        return {**common, **_detection_fields(artifact)}
    return {**common, **_classification_fields(artifact, len(info.tags))}


def _common_fields(
    artifact: ClassifierArtifact | DetectorArtifact,
    info: ExportInfo,
    platform: Platform,
    model_file: str,
) -> dict[str, Any]:
    """Provenance, tags and normalisation: what both kinds of manifest say."""
    tags = [
        {"index": tag.index, "id": tag.tag_id, "name": tag.name}
        for tag in sorted(info.tags, key=lambda tag: tag.index)
    ]
    spec = get_backbone(artifact.backbone)
    normalization = {
        "mean": list(spec.mean),
        "std": list(spec.std),
        "formula": "x = (pixel / 255 - mean) / std, per RGB channel",
        "inside_model": True,
    }
    return {
        "format": "loupe-model-export",
        "format_version": 1,
        "platform": platform,
        "model_file": model_file,
        "onnx_opset": ONNX_OPSET if platform == "ONNX" else None,
        "loupe_version": info.loupe_version,
        "exported_at": info.exported_at,
        "project": {"id": info.project_id, "name": info.project_name, "domain": info.domain},
        "iteration": {
            "id": info.iteration_id,
            "number": info.iteration_number,
            "name": info.iteration_name,
            "published_name": info.published_name,
        },
        "training_type": info.training_type,
        "backbone": artifact.backbone,
        "threshold": info.threshold,
        "tags": tags,
        "normalization": normalization,
    }


def _detection_fields(artifact: DetectorArtifact) -> dict[str, Any]:
    """Input, resize rule and outputs of the whole torchvision detector."""
    config = artifact.config
    return {
        "type": "detection",
        "classification_type": None,
        "architecture": config.architecture,
        "input": {
            "name": "pixels",
            "dtype": "uint8",
            "layout": "HWC",
            "shape": ["height", "width", 3],
            "channels": "RGB",
            "range": [0, 255],
        },
        "resize": {
            "method": "fit_shorter_side",
            "shorter_side_px": config.image_size_px,
            "max_longer_side_px": config.max_size_px,
            "formula": "scale = min(shorter_side_px / min(w, h), "
            "max_longer_side_px / max(w, h)); size = (int(w * scale), int(h * scale))",
            "resample": "bilinear (Pillow)",
            "exif_transpose": True,
            "jpeg_draft": False,
        },
        "outputs": [
            {
                "name": "boxes",
                "dtype": "float32",
                "shape": ["detections", 4],
                "meaning": "x1, y1, x2, y2 in pixels of the resized input",
            },
            {
                "name": "scores",
                "dtype": "float32",
                "shape": ["detections"],
                "meaning": "probability 0..1, after per-tag non-maximum suppression",
            },
            {
                "name": "labels",
                "dtype": "int64",
                "shape": ["detections"],
                "meaning": "tag index (tags[].index)",
            },
        ],
        "min_score": config.score_threshold,
        "nms_iou": config.nms_iou,
        "max_detections": config.max_detections,
    }


def _classification_fields(artifact: ClassifierArtifact, tag_count: int) -> dict[str, Any]:
    """Input, resize rule and output of the backbone with its head."""
    size = get_backbone(artifact.backbone).input_size
    return {
        "type": "classification",
        "classification_type": "Multilabel" if artifact.multilabel else "Multiclass",
        "input": {
            "name": "pixels",
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": ["batch", size, size, 3],
            "size_px": size,
            "channels": "RGB",
            "range": [0, 255],
        },
        "resize": {
            "method": "shorter_side_then_center_crop",
            "size_px": size,
            "resample": "bilinear (Pillow), resizing only the centre square's box",
            "exif_transpose": True,
            "jpeg_draft": True,
        },
        "outputs": [
            {
                "name": "probabilities",
                "dtype": "float32",
                "shape": ["batch", tag_count],
                "meaning": (
                    "sigmoid per tag"
                    if artifact.multilabel
                    else "softmax over the tags "
                    "and a background class; the background column is dropped"
                ),
            }
        ],
    }


def readme(manifest: dict[str, Any]) -> str:
    """README.md of an export: what is inside, how to run it, the preprocessing step by step."""
    is_detection = manifest["type"] == "detection"
    runtime = "onnxruntime" if manifest["platform"] == "ONNX" else "torch"
    if runtime == "torch" and is_detection:
        runtime = "torch torchvision"  # the TorchScript detector calls torchvision::nms
    kind = "Object detection" if is_detection else f"{manifest['classification_type']} classifier"
    tags = "\n".join(f"{tag['index']}. {tag['name']}" for tag in manifest["tags"])
    opset = f" (ONNX opset {manifest['onnx_opset']})" if manifest["onnx_opset"] else ""
    lines = [
        f"# {manifest['project']['name']}: {manifest['iteration']['name']}",
        "",
        f"{kind} exported from Loupe {manifest['loupe_version']} as {manifest['platform']}"
        f"{opset}. Backbone {manifest['backbone']}, {manifest['training_type']} training.",
        "",
        "## Files",
        "",
        f"- `{manifest['model_file']}`: the model.",
        "- `manifest.json`: tags in output order, input, resize rule, normalisation, threshold.",
        "- `predict.py`: runs the model on image files and prints the JSON of Loupe's prediction"
        " API.",
        "",
        "## Run it",
        "",
        "```",
        f"pip install numpy pillow {runtime}",
        "python predict.py photo.jpg",
        "```",
        "",
        "Loupe tests that `predict.py` and its own prediction API give the same answer for the "
        "same image (probabilities within 1e-4; boxes with IoU >= 0.99 and scores within 1e-3). "
        "That holds only with the preprocessing below, done with Pillow as `predict.py` does it.",
        "",
        "## Tags (output order)",
        "",
        tags,
        "",
        f"Threshold saved on the performance page: {manifest['threshold']:.2f}. The API and "
        "`predict.py` report every tag" + (" box" if is_detection else "") + "; treat those "
        "with a probability at or above the threshold as found.",
        "",
        "## Preprocessing",
        "",
    ]
    lines += _detection_steps(manifest) if is_detection else _classification_steps(manifest)
    return "\n".join(lines) + "\n"


def _classification_steps(manifest: dict[str, Any]) -> list[str]:
    size = manifest["input"]["size_px"]
    norm = manifest["normalization"]
    activation = manifest["outputs"][0]["meaning"]
    return [
        f"1. Decode the file with Pillow. A JPEG is decoded with `image.draft('RGB', ({size}, "
        f"{size}))` first (a reduced DCT scale keeping both sides at least {size} px).",
        "2. Turn it upright by its EXIF orientation (`ImageOps.exif_transpose`), convert to RGB.",
        f"3. Take the centred square of side min(width, height) and resize it to {size} x {size} "
        "with bilinear filtering in one call: "
        f"`image.resize(({size}, {size}), Image.BILINEAR, box=square)`.",
        f"4. Feed uint8 pixels shaped (batch, {size}, {size}, 3), RGB, 0..255, input `pixels`. "
        f"The model normalises inside: x = (pixel / 255 - {norm['mean']}) / {norm['std']}.",
        f"5. Output `probabilities` (batch, {len(manifest['tags'])}) in the tag order above: "
        f"{activation}.",
    ]


def _detection_steps(manifest: dict[str, Any]) -> list[str]:
    resize = manifest["resize"]
    return [
        "1. Decode the whole file with Pillow (no draft), turn it upright by its EXIF "
        "orientation (`ImageOps.exif_transpose`), convert to RGB.",
        f"2. Resize with bilinear filtering so the shorter side is {resize['shorter_side_px']} "
        f"px unless the longer side would pass {resize['max_longer_side_px']} px: "
        f"{resize['formula']}. Skip the resize when the size is already that.",
        "3. Feed uint8 pixels shaped (height, width, 3), RGB, 0..255, as input `pixels` (one "
        "image per call). The model normalises inside with mean "
        f"{manifest['normalization']['mean']} and std {manifest['normalization']['std']}.",
        "4. Outputs: `boxes` (x1, y1, x2, y2 in pixels of the resized image), `scores`, `labels` "
        f"(tag index), after non-maximum suppression per tag at IoU {manifest['nms_iou']}, "
        f"scores from {manifest['min_score']} up.",
        "5. The API's boxes: sort by score (highest first), divide x by the resized width and y "
        "by its height, clip to 0..1, left = x1, top = y1, width = x2 - x1, height = y2 - y1; "
        "drop boxes of zero width or height.",
    ]
