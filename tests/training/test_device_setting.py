"""LOUPE_DEVICE: checked when the settings load, and a GPU asked for on a machine without one
ends a training with a reason the user can act on (a CPU-only machine here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from training.models import Iteration
from training.services.iterations import start_iteration
from training.tasks import run_iteration


def test_an_unknown_device_setting_stops_the_settings_from_loading():
    env = {**os.environ, "LOUPE_DEVICE": "gpu", "DJANGO_SETTINGS_MODULE": "project.settings"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "LOUPE_DEVICE must be auto, cpu or cuda, not 'gpu'" in done.stderr


@pytest.mark.django_db
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_machine_without_a_gpu_fails_the_training_with_its_reason(
    project, users, build_dataset, settings
):
    settings.LOUPE_DEVICE = "cuda"
    build_dataset(project, {"red": 5, "green": 5})
    iteration = start_iteration(project=project, by=users["admin"])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert "torch sees no CUDA GPU" in iteration.failure_message
    assert "set it to auto or cpu" in iteration.failure_message
