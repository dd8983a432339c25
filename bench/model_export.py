"""Model export time (issue 12): lite0 and lite2 classifiers and the lite0 FCOS detector, to ONNX
and TorchScript, through `run_model_export` (what the Celery task `training.export_model` runs:
read the artifact from storage, convert, self-check, zip to a temporary file, save through the
default storage).

    .venv/bin/python bench/model_export.py [--record]

Side by side, for each model, the time the app takes to load the same artifact for prediction
(predictions.model_cache.LoadedModel, which builds its ONNX Runtime session the same way), so
the ratio says what an export costs next to something users already wait for. A fresh data
directory (SQLite, local media) is made and removed; weights are the packaged ImageNet ones with
a random head (conversion time does not depend on the values).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import append_result, command_line, machine_line


def _setup(data_dir: str) -> None:
    os.environ.update(
        LOUPE_DATA_DIR=data_dir,
        MEDIA_ROOT=str(Path(data_dir) / "media"),
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _classifier(backbone: str, tags: int) -> bytes:
    import torch

    from training.ml.artifact import ClassifierArtifact, save_artifact
    from training.ml.preprocessing import PREPROCESSING_VERSION

    artifact = ClassifierArtifact(
        backbone=backbone,
        multilabel=False,
        tag_keys=[f"tag{i}" for i in range(tags)],
        head_weight=torch.randn(tags + 1, 1280) * 0.05,
        head_bias=torch.zeros(tags + 1),
        backbone_state=None,
        preprocessing_version=PREPROCESSING_VERSION,
    )
    buffer = io.BytesIO()
    save_artifact(artifact, buffer)
    return buffer.getvalue()


def _detector(tags: int) -> bytes:
    from training.ml.detection import (
        DetectorArtifact,
        DetectorConfig,
        build_detector,
        save_detector_artifact,
    )

    config = DetectorConfig()  # production sizes: shorter side 320, longer side at most 448
    model = build_detector("lite0", tags, config)
    buffer = io.BytesIO()
    save_detector_artifact(
        DetectorArtifact(backbone="lite0", num_tags=tags, config=config, state=model.state_dict()),
        buffer,
    )
    return buffer.getvalue()


def _iteration(kind: str, domain: str, backbone: str, payload: bytes, tags: int):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from labeling.models import Membership, Project, Role, Tag
    from training.models import Iteration, IterationTag

    user = get_user_model().objects.get_or_create(username="bench")[0]
    project = Project.objects.create(
        name=f"Bench {backbone} {kind}", kind=kind, domain=domain, owner=user
    )
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    iteration = Iteration.objects.create(
        project=project, number=1, name="Iteration 1", status="completed", backbone=backbone
    )
    for index in range(tags):
        tag = Tag.objects.create(project=project, name=f"tag{index}")
        IterationTag.objects.create(iteration=iteration, tag=tag, name=tag.name, index=index)
    iteration.artifact.save("model.pt", ContentFile(payload), save=True)
    return iteration


def _measure(iteration, platform: str) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from training.models import ModelExport
    from training.services.model_export import run_model_export

    # The row start_model_export would queue (its message would need a broker; the bench runs
    # the worker's side directly).
    export = ModelExport.objects.create(iteration=iteration, platform=platform)
    started = time.perf_counter()
    finished = run_model_export(export.pk)
    seconds = time.perf_counter() - started
    assert finished is not None and finished.status == "done", finished and finished.failure_message
    return seconds, finished.size_bytes


def _load_for_prediction(payload: bytes) -> float:
    from predictions.model_cache import LoadedModel

    started = time.perf_counter()
    LoadedModel(payload, threads=1)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="loupe-bench-export-")
    try:
        _setup(data_dir)
        import torch

        torch.manual_seed(0)
        cases = [
            ("lite0 classifier (General compact)", "multiclass", "general_compact", "lite0",
             _classifier("lite0", 5)),
            ("lite2 classifier (General)", "multiclass", "general", "lite2",
             _classifier("lite2", 5)),
            ("lite0 FCOS detector", "detection", "general_compact", "lite0", _detector(3)),
        ]  # fmt: skip
        rows = []
        for label, kind, domain, backbone, payload in cases:
            load_s = _load_for_prediction(payload)  # also warms the packaged weights' cache
            for platform in ("ONNX", "TorchScript"):
                iteration = _iteration(
                    kind, domain, backbone, payload, 5 if kind != "detection" else 3
                )
                seconds, size = _measure(iteration, platform)
                rows.append((label, platform, seconds, size, load_s))
                print(
                    f"{label:38} {platform:12} {seconds:6.1f} s  {size / 1e6:6.1f} MB  "
                    f"load for prediction {load_s:5.1f} s  ratio {seconds / load_s:4.1f}"
                )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.record:
        load = os.getloadavg()[0]
        table = "\n".join(
            f"| {label} | {platform} | {seconds:.1f} | {size / 1e6:.1f} | {load_s:.1f} | "
            f"{seconds / load_s:.1f} |"
            for label, platform, seconds, size, load_s in rows
        )
        append_result(
            "Issue 12: data in and out",
            f"""### Model export time (bench/model_export.py)

Command: `{command_line()}`
Machine: {machine_line()}; 1-minute load average {load:.1f} at the end (other work shares the
machine: compare the ratio, measured side by side). Measured: `run_model_export` (the Celery
task's body: artifact from storage, conversion, self-check against the eager model, zip to a
temporary file, saved through the default storage); beside it, loading the same artifact for
prediction (`predictions.model_cache.LoadedModel`, threads=1).

| model | platform | export (s) | zip (MB) | load for prediction (s) | ratio |
|---|---|---|---|---|---|
{table}""",
        )


if __name__ == "__main__":
    main()
