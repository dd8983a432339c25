"""The exported graphs and their check, shared by the model export and the serving file.

An exported model is the same modules the app runs (ClassifierGraph, DetectorGraph), traced to
ONNX or TorchScript, then run once against eager PyTorch on a check input (self_check): a
converter that drifts fails the job with a reason instead of shipping a model that predicts
differently. training.ml.export packages these for users; training.ml.serving_build writes the
web process's serving file from them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .artifact import ClassifierArtifact, load_artifact
from .backbones import build_feature_extractor, get_backbone
from .detection import DetectorArtifact, load_detector_artifact
from .detection.model import Detector
from .export_manifest import ONNX_OPSET
from .inference import PixelInput

# The self-check's limits (exported vs eager PyTorch on one test input): an order of magnitude
# tighter than the parity the tests promise, so a drifting converter is caught at export time.
CHECK_PROBABILITY_ATOL = 1e-5
CHECK_BOX_ATOL_PX = 1e-2
CHECK_SCORE_ATOL = 1e-4


class ExportMismatch(Exception):
    """The exported model disagrees with the trained one on the self-check input."""


def load_model_artifact(payload: bytes) -> ClassifierArtifact | DetectorArtifact:
    """Read either kind of artifact file (weights_only: no code runs on load)."""
    meta = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if isinstance(meta, dict) and meta.get("kind") == "detector":
        return load_detector_artifact(io.BytesIO(payload))
    return load_artifact(io.BytesIO(payload))


class ClassifierGraph(nn.Module):
    """Normalised (N,3,S,S) -> (N,T) float32 probabilities in tag-index order: the backbone,
    then training.ml.quick.head_probabilities' linear head, softmax without the background
    column (multiclass) or sigmoid (multilabel)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, artifact: ClassifierArtifact) -> None:
        super().__init__()
        self.extractor = build_feature_extractor(artifact.backbone)
        if artifact.backbone_state is not None:
            self.extractor.load_state_dict(artifact.backbone_state)
        self.register_buffer("weight", artifact.head_weight.detach().to(torch.float32).clone())
        self.register_buffer("bias", artifact.head_bias.detach().to(torch.float32).clone())
        self.multilabel = artifact.multilabel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.extractor(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """(N,D) pooled features -> (N,T) probabilities (training.ml.serving_build also
        outputs the features themselves)."""
        logits = features @ self.weight.T + self.bias
        if self.multilabel:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)[:, :-1]


class DetectorGraph(nn.Module):
    """uint8 (H,W,3) RGB pixels, already resized by the caller to the detector's inference size
    -> boxes float32 (N,4) x1,y1,x2,y2 in those pixels, scores float32 (N,), labels int64 (N,),
    after per-tag NMS. The torchvision detector normalises (and would resize) inside."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = pixels.permute(2, 0, 1).to(torch.float32) / 255.0
        output = self.model([image])[0]
        return output["boxes"], output["scores"], output["labels"]


def classifier_module(artifact: ClassifierArtifact) -> nn.Module:
    """uint8 (N,S,S,3) -> (N,T) probabilities, in eval mode."""
    spec = get_backbone(artifact.backbone)
    return PixelInput(ClassifierGraph(artifact).eval(), spec).eval()


def detector_module(artifact: DetectorArtifact) -> nn.Module:
    """uint8 (H,W,3) -> (boxes, scores, labels), in eval mode."""
    return DetectorGraph(artifact.build()).eval()


def example_input(artifact: ClassifierArtifact | DetectorArtifact) -> torch.Tensor:
    if isinstance(artifact, DetectorArtifact):
        size = artifact.config.image_size_px
        return torch.zeros(size, size, 3, dtype=torch.uint8)
    size = get_backbone(artifact.backbone).input_size
    return torch.zeros(2, size, size, 3, dtype=torch.uint8)  # batch 2: the batch stays dynamic


def check_input(artifact: ClassifierArtifact | DetectorArtifact) -> torch.Tensor:
    """Seeded noise (another shape than the trace's for the detector, so a size baked into the
    graph shows up)."""
    generator = torch.Generator().manual_seed(0)
    if isinstance(artifact, DetectorArtifact):
        short, long_ = artifact.config.image_size_px, artifact.config.max_size_px
        shape: tuple[int, ...] = (short, max(short, min(long_, short * 4 // 3)), 3)
    else:
        size = get_backbone(artifact.backbone).input_size
        shape = (3, size, size, 3)
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def onnx_graph_bytes(
    module: nn.Module,
    example: torch.Tensor,
    *,
    is_detector: bool,
    outputs: tuple[str, ...] = ("probabilities",),
) -> bytes:
    """`outputs`: a classifier's output names, each batch-first (the serving graph adds
    "embedding")."""
    buffer = io.BytesIO()
    if is_detector:
        names, axes = ["boxes", "scores", "labels"], {"pixels": {0: "height", 1: "width"}}
        axes.update({name: {0: "detections"} for name in names})
    else:
        names, axes = list(outputs), {"pixels": {0: "batch"}}
        axes.update({name: {0: "batch"} for name in names})
    # The exporters warn about traced shapes torchvision handles on purpose; users never see them.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works; the stub says path only
            input_names=["pixels"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,  # the TorchScript exporter needs no onnxscript (as inference.py)
        )
    return buffer.getvalue()


def torchscript_graph_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    # Traced and frozen, not optimize_for_inference'd: that rewrites for this machine's CPU
    # (MKL-DNN layouts), and the file must load on any PyTorch install.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (example,), check_trace=False)  # type: ignore[no-untyped-call]
        frozen = torch.jit.freeze(traced.eval())
        buffer = io.BytesIO()
        torch.jit.save(frozen, buffer)
    return buffer.getvalue()


Runner = Callable[[np.ndarray], list[np.ndarray]]


def onnx_runner(model: bytes) -> Runner:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    def run(pixels: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(out) for out in session.run(None, {"pixels": pixels})]

    return run


def torchscript_runner(model: bytes) -> Runner:
    with warnings.catch_warnings():  # torch.jit is deprecated, yet the portable format
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(io.BytesIO(model), map_location="cpu")  # type: ignore[no-untyped-call]

    def run(pixels: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = module(torch.from_numpy(pixels))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [out.numpy() for out in outputs]

    return run


def self_check(module: nn.Module, run: Runner, pixels: torch.Tensor, *, is_detector: bool) -> None:
    with torch.no_grad():
        expected = module(pixels)
    got = run(np.ascontiguousarray(pixels.numpy()))
    if not is_detector:
        gap = float(np.abs(got[0] - expected.numpy()).max())
        if gap > CHECK_PROBABILITY_ATOL:
            raise ExportMismatch(f"probabilities differ by {gap:.2e} on the check image")
        return
    boxes, scores, labels = (tensor.numpy() for tensor in expected)
    if got[0].shape != boxes.shape or not np.array_equal(got[2], labels):
        raise ExportMismatch(
            f"{len(got[0])} detections against {len(boxes)} (or other tags) on the check image"
        )
    box_gap = float(np.abs(got[0] - boxes).max(initial=0.0))
    score_gap = float(np.abs(got[1] - scores).max(initial=0.0))
    if box_gap > CHECK_BOX_ATOL_PX or score_gap > CHECK_SCORE_ATOL:
        raise ExportMismatch(
            f"boxes differ by {box_gap:.2e} px and scores by {score_gap:.2e} on the check image"
        )
