"""Fast CPU inference engines for a backbone: ONNX Runtime, TorchScript or eager PyTorch.

bench/embedding.py measures all three on the same batches; on this 2-core CPU ONNX Runtime ran
EfficientNet-Lite0 about 3x faster than TorchScript's optimize_for_inference (which itself only
edged out eager), with outputs equal within 1e-5. "auto" therefore picks ONNX Runtime and falls
back to TorchScript if the onnx/onnxruntime packages are missing.

An engine is a callable uint8 (N,S,S,3) pixels -> float32 (N,D) numpy. The backbone's
normalisation is part of the engine's graph (`PixelInput`): done in torch outside the graph it
cost as much CPU per image as JPEG decoding. Every engine is safe to call from several threads at
once: ORT sessions and frozen TorchScript modules keep no state between calls.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from .backbones import BackboneSpec
from .device import precision_for, resolve_device, to_device

Engine = Callable[[np.ndarray], np.ndarray]
EngineName = Literal["auto", "onnxruntime", "torchscript", "eager"]


class PixelInput(nn.Module):
    """uint8 (N,H,W,3) -> the backbone's normalised float input -> `model`."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: nn.Module, spec: BackboneSpec) -> None:
        super().__init__()
        self.model = model
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).to(torch.float32) * self.scale + self.shift
        return self.model(x)  # type: ignore[no-any-return]


def _eager(model: nn.Module) -> Engine:
    model = model.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = model(torch.from_numpy(batch)).numpy()
        return out

    return run


def _example(input_size: int) -> torch.Tensor:
    return torch.zeros(2, input_size, input_size, 3, dtype=torch.uint8)


def torchscript_module(model: nn.Module, input_size: int) -> torch.jit.ScriptModule:
    """Trace, freeze and optimise `model` with TorchScript (shape-generic in the batch)."""
    example = _example(input_size)
    # torch.jit is deprecated in favour of torch.compile, but it needs no compiler at run time
    # and is the mode measured in bench/RESULTS.md; its warnings would only alarm users.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            model.eval(), example, check_trace=False
        )
        frozen = torch.jit.freeze(traced.eval())
        return torch.jit.optimize_for_inference(frozen)


def _torchscript(model: nn.Module, input_size: int) -> Engine:
    return _eager(torchscript_module(model, input_size))


def onnx_bytes(model: nn.Module, input_size: int) -> bytes:
    """Export `model` (taking uint8 NHWC pixels) to ONNX (opset 17, dynamic batch) in memory."""
    buffer = io.BytesIO()
    example = _example(input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works; the stub says path only
            input_names=["pixels"],
            output_names=["output"],
            dynamic_axes={"pixels": {0: "batch"}, "output": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles timm fine
        )
    return buffer.getvalue()


def _onnxruntime(model: nn.Module, input_size: int, threads: int | None) -> Engine:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # By default follow the process's torch thread setting so one knob sizes both libraries.
    options.intra_op_num_threads = max(1, threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    # No busy-waiting between ops: spinning threads burn the cores that concurrent requests (the
    # prediction API) and the decode threads of the embedding pipeline need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        onnx_bytes(model, input_size), options, providers=["CPUExecutionProvider"]
    )

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = session.run(None, {"pixels": np.ascontiguousarray(batch, dtype=np.uint8)})
        result: np.ndarray = outputs[0]
        return result

    return run


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _cuda(model: nn.Module, device: torch.device) -> Engine:
    """Eager PyTorch on a CUDA GPU under autocast (bfloat16, else float16), pixels sent through
    pinned memory; outputs come back as float32 numpy."""
    model = model.to(device).eval()
    precision = precision_for(device)

    def run(batch: np.ndarray) -> np.ndarray:
        pixels = to_device(torch.from_numpy(np.ascontiguousarray(batch)), device)
        with torch.inference_mode(), precision.autocast():
            out: np.ndarray = model(pixels).float().cpu().numpy()
        return out

    return run


def build_engine(
    model: nn.Module,
    spec: BackboneSpec,
    engine: EngineName = "auto",
    *,
    threads: int | None = None,
    device: str = "cpu",
    input_size: int | None = None,
) -> Engine:
    """Wrap `model` (normalised input) in an engine taking uint8 pixels.

    "auto" is ONNX Runtime if installed, else TorchScript. `threads` sizes ONNX Runtime's
    intra-op pool (default: torch's thread count). A server running one image per call on
    every core at once wants 1: at batch 1 a second thread adds 20-65% CPU for 0-20% less
    latency (lite0 on 2 cores; it varies by machine), and the cores are already busy with
    other requests (bench/prediction_api.py). TorchScript and eager follow torch's setting.
    `device` "cuda" (or "auto" on a machine with a GPU) runs eager torch on the GPU instead.
    `input_size` is the side of the square pixels it will be given (default: the backbone's);
    the ONNX and TorchScript graphs are specialised to it.
    """
    model = PixelInput(model.eval(), spec).eval()
    target = resolve_device(device)
    if target.type == "cuda":
        # Not measured against ONNX Runtime's CUDA provider (no GPU where this was written):
        # torch on the GPU needs no extra package beyond a CUDA build of torch.
        return _cuda(model, target)
    input_size = input_size or spec.input_size
    if engine == "auto":
        engine = "onnxruntime" if onnxruntime_available() else "torchscript"
    if engine == "onnxruntime":
        return _onnxruntime(model, input_size, threads)
    if engine == "torchscript":
        return _torchscript(model, input_size)
    if engine == "eager":
        return _eager(model)
    raise ValueError(f"Unknown inference engine {engine!r}.")
