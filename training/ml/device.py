"""Where training and prediction run: the device, mixed precision and the CPU thread count.

The caller (a worker, a test, a bench) says which device it wants as a plain string: "auto"
(CUDA when torch sees a GPU, else the CPU), "cpu" or "cuda". Nothing here reads settings.
On CUDA, training runs under autocast in bfloat16 when the GPU supports it (no loss scaling
needed), else float16 with a GradScaler; batches come from pinned memory. On the CPU nothing
changes: float32, no scaler.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch

from .errors import MLError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceUnavailable(MLError):
    """The device asked for is not there (e.g. "cuda" on a machine without a GPU)."""


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device for "auto", "cpu" or "cuda" (ValueError for anything else)."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICE_CHOICES:
        raise ValueError(f"The device must be one of {', '.join(DEVICE_CHOICES)}, not {name!r}.")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        raise DeviceUnavailable(
            "The device is set to cuda but torch sees no CUDA GPU (a CPU-only torch, or no "
            "driver); set it to auto or cpu, or install a CUDA build of torch."
        )
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """How a training step runs on `device`: autocast dtype (None: float32) and loss scaling."""

    device: torch.device
    dtype: torch.dtype | None
    scaled: bool

    def autocast(self) -> AbstractContextManager[object]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled for float16 only (bfloat16 and float32 need none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.scaled)


def precision_for(device: torch.device) -> Precision:
    """bfloat16 autocast on a CUDA GPU that supports it, float16 + GradScaler on an older one,
    float32 on the CPU."""
    if device.type != "cuda":
        return Precision(device, None, scaled=False)
    if torch.cuda.is_bf16_supported():
        return Precision(device, torch.bfloat16, scaled=False)
    return Precision(device, torch.float16, scaled=True)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a CPU batch to `device`, through pinned memory on CUDA (an asynchronous copy)."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `count` (None: unchanged).

    On a shared CPU, OpenMP threads wait for each other at every barrier: with the other core
    busy, 2 threads ran the detector 15-25x slower than 1 on this 2-core machine
    (bench/RESULTS.md), so the training worker defaults to 1.
    """
    if not count:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
