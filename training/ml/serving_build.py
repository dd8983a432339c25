"""Write a trained iteration's serving file (training.ml.serving reads it): worker side, torch.

Built on the model export's graphs (training.ml.export_graphs): the same modules, opset and
converter, with two differences the web process needs: the classifier's graph also outputs
the pooled embedding the stored-prediction ranking keeps, and a detector's file carries the stock
backbone's embedding graph (the detector has no pooled head). Every file is checked against
eager PyTorch before it is written (export_graphs' self_check), so a converter bug fails the job
with a reason instead of serving different predictions.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import torch
from torch import nn

from .artifact import ClassifierArtifact
from .backbones import build_feature_extractor, get_backbone
from .detection import DetectorArtifact
from .export_graphs import (
    ClassifierGraph,
    ExportMismatch,
    check_input,
    detector_module,
    example_input,
    onnx_graph_bytes,
    onnx_runner,
    self_check,
)
from .export_manifest import ONNX_OPSET
from .inference import PixelInput, onnx_bytes
from .preprocessing import PREPROCESSING_VERSION
from .serving import SERVING_FORMAT, SERVING_VERSION

# Probabilities: half the parity the tests promise (1e-4). Export's tighter 1e-5 is too tight for
# a two-output graph on Lite0 at 224 px: 1.3e-5 measured on seeded noise (bench/memory.py's model).
CHECK_PROBABILITY_ATOL = 5e-5
# The embedding is stored as float16 for ranking (predictions.Prediction.embedding): 1e-4 of
# a feature's scale is far below float16's own rounding.
CHECK_EMBEDDING_RTOL = 1e-4


class _WithEmbedding(nn.Module):
    """Normalised (N,3,S,S) -> (probabilities (N,T), pooled features (N,D)) in one pass."""

    def __init__(self, graph: ClassifierGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.graph.extractor(x)
        return self.graph.head(features), features


def stock_graph_name(backbone: str) -> str:
    """Where the stock backbone's embedding graph is kept, once for every iteration using it."""
    return f"serving/stock/{backbone}-p{PREPROCESSING_VERSION}-opset{ONNX_OPSET}.onnx"


def build_stock_graph(backbone: str) -> bytes:
    """The stock backbone: uint8 (N,S,S,3) -> pooled embedding (N,D), checked."""
    spec = get_backbone(backbone)
    stock = PixelInput(build_feature_extractor(backbone).eval(), spec).eval()
    model = onnx_bytes(stock, spec.input_size)
    _check_embedding(stock, model, spec.input_size, output=0)
    return model


def build_serving(artifact: ClassifierArtifact | DetectorArtifact) -> tuple[bytes, str | None]:
    """The serving zip of `artifact`, and the stock graph it uses (stock_graph_name) or None.

    A quick classifier (stock backbone) is its head as arrays over the shared stock graph: the
    same engine and head the torch path ran, and nothing to convert at a training's end. A
    fine-tuned classifier is one graph giving probabilities and embedding; a detector is its
    graph plus the shared stock graph for the embedding. Raises ExportMismatch when a graph
    fails its check.
    """
    spec = get_backbone(artifact.backbone)
    manifest: dict[str, object] = {
        "format": SERVING_FORMAT,
        "version": SERVING_VERSION,
        "onnx_opset": ONNX_OPSET,
        "backbone": artifact.backbone,
        "input_size": spec.input_size,
    }
    files: dict[str, bytes] = {}
    stock: str | None = None
    if isinstance(artifact, DetectorArtifact):
        module = detector_module(artifact)
        files["model.onnx"] = onnx_graph_bytes(module, example_input(artifact), is_detector=True)
        self_check(
            module, onnx_runner(files["model.onnx"]), check_input(artifact), is_detector=True
        )
        stock = stock_graph_name(artifact.backbone)
        config = artifact.config
        manifest.update(
            type="detection",
            tag_count=artifact.num_tags,
            resize={
                "shorter_side_px": config.image_size_px,
                "max_longer_side_px": config.max_size_px,
            },
        )
    elif artifact.backbone_state is None:
        stock = stock_graph_name(artifact.backbone)
        head = io.BytesIO()
        np.savez(
            head,
            weight=artifact.head_weight.detach().to(torch.float32).numpy(),
            bias=artifact.head_bias.detach().to(torch.float32).numpy(),
        )
        files["head.npz"] = head.getvalue()
        manifest.update(
            type="classification", multilabel=artifact.multilabel, tag_count=len(artifact.tag_keys)
        )
    else:
        module = PixelInput(_WithEmbedding(ClassifierGraph(artifact).eval()), spec).eval()
        files["model.onnx"] = onnx_graph_bytes(
            module,
            example_input(artifact),
            is_detector=False,
            outputs=("probabilities", "embedding"),
        )
        _check_embedding(module, files["model.onnx"], spec.input_size, output=1)
        manifest.update(
            type="classification", multilabel=artifact.multilabel, tag_count=len(artifact.tag_keys)
        )
    manifest["stock_graph"] = stock
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue(), stock


def _check_embedding(module: nn.Module, model: bytes, size: int, *, output: int) -> None:
    """ONNX Runtime against eager PyTorch on seeded noise: every output within its limit
    (classifier: probabilities then the embedding; the stock graph: the embedding only)."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (3, size, size, 3), generator=generator, dtype=torch.uint8)
    with torch.no_grad():
        expected = module(pixels)
    wanted = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    got = onnx_runner(model)(np.ascontiguousarray(pixels.numpy()))
    if output == 1:
        gap = float(np.abs(got[0] - wanted[0]).max())
        if gap > CHECK_PROBABILITY_ATOL:
            raise ExportMismatch(f"probabilities differ by {gap:.2e} on the check image")
    scale = float(np.abs(wanted[-1]).max()) or 1.0
    gap = float(np.abs(got[-1] - wanted[-1]).max()) / scale
    if gap > CHECK_EMBEDDING_RTOL:
        raise ExportMismatch(f"embeddings differ by {gap:.2e} (relative) on the check image")
