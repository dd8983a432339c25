"""Device selection, mixed precision and thread limits, checked on whatever machine runs them
(a CPU-only one in CI: "auto" must mean the CPU there, "cuda" a clear refusal)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.ml.test_detection import TINY, _toy_dataset
from training.ml.advanced import fine_tune
from training.ml.backbones import build_feature_extractor, get_backbone
from training.ml.detection import train_detector
from training.ml.device import (
    DeviceUnavailable,
    precision_for,
    resolve_device,
    to_device,
    torch_threads,
)
from training.ml.errors import MLError
from training.ml.inference import build_engine

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(torch.device("cpu")).type == "cpu"


def test_an_unknown_device_name_is_refused():
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("gpu")


@no_gpu
def test_cuda_without_a_gpu_is_a_named_failure_with_a_user_message():
    with pytest.raises(DeviceUnavailable) as caught:
        resolve_device("cuda")
    assert isinstance(caught.value, MLError)
    assert "torch sees no CUDA GPU" in caught.value.message


def test_the_cpu_trains_in_float32_without_a_scaler():
    precision = precision_for(torch.device("cpu"))
    assert precision.dtype is None and not precision.scaled
    assert not precision.scaler().is_enabled()
    with precision.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    batch = torch.ones(3)
    assert to_device(batch, torch.device("cpu")) is batch


def test_thread_limit_applies_inside_and_is_restored_after():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


@no_gpu
def test_training_and_serving_on_cuda_without_a_gpu_refuse_before_any_work():
    refs, boxes = _toy_dataset(count=10)
    targets = np.eye(2, dtype=np.float32)[[i % 2 for i in range(10)]]
    with pytest.raises(DeviceUnavailable):
        fine_tune(refs, targets, multilabel=False, backbone="lite0", budget_s=60, device="cuda")
    with pytest.raises(DeviceUnavailable):
        train_detector(
            refs, boxes, num_tags=2, backbone="lite0", budget_s=60, config=TINY, device="cuda"
        )
    with pytest.raises(DeviceUnavailable):
        build_engine(build_feature_extractor("lite0"), get_backbone("lite0"), device="cuda")


def test_a_detector_trains_on_the_cpu_when_asked_for_explicitly():
    refs, boxes = _toy_dataset(count=10)
    from training.ml.detection import TrainOptions

    result = train_detector(
        refs,
        boxes,
        num_tags=2,
        backbone="lite0",
        budget_s=120,
        config=TINY,
        options=TrainOptions(max_epochs=1),
        device="cpu",
    )

    assert result.epochs == 1
    assert all(tensor.device.type == "cpu" for tensor in result.state.values())
