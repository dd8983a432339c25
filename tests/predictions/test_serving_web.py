"""The web process predicts through the iteration's serving file (ONNX Runtime), never torch.

- A training's artifact is written with its serving file beside it.
- A fresh interpreter set up as the web process (Django, the ASGI app with the prediction fast
  lane) runs a prediction through the real request path (predict_bytes: checks, decode, model
  cache, scoring) and never imports torch; its answer matches the torch model's within 1e-4.
- An iteration trained before serving files existed still predicts at once (the torch model,
  same answer); the worker task writes its serving file, and the next load serves from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from predictions.model_cache import model_cache
from predictions.models import Prediction
from predictions.services.predict import predict_bytes, target_for
from tests.predictions.conftest import BLUE, GREEN, RED, colour_png
from tests.predictions.test_api import post
from training.ml.export import load_model_artifact
from training.ml.serving import ServingModel, serving_name
from training.ml.torch_model import LoadedModel
from training.services.finish import save_artifact_file
from training.services.serving import build_serving_model, write_serving_file

pytestmark = pytest.mark.django_db(transaction=False)

ROOT = Path(__file__).resolve().parents[2]


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def _artifact(trained):
    with default_storage.open(trained.iteration.artifact.name, "rb") as handle:
        return load_model_artifact(handle.read())


def test_a_trained_artifact_is_written_with_its_serving_file(trained):
    name = save_artifact_file(trained.iteration, _artifact(trained))
    assert default_storage.exists(serving_name(name))
    with default_storage.open(serving_name(name), "rb") as handle:
        model = ServingModel(handle.read(), read=_read)
    assert not model.is_detector and model.tag_count == 3 and model.input_size == 64


def test_the_web_prediction_path_never_imports_torch(trained, settings):
    write_serving_file(trained.iteration.artifact.name, _artifact(trained))
    target = target_for(trained.project, trained.iteration)
    script = textwrap.dedent(
        """
        import json, sys
        import django
        django.setup()
        import project.asgi  # the web process's app: Django and the prediction fast lane
        from predictions.services.predict import Target, TargetTag, predict_bytes
        spec = json.loads(sys.stdin.read())
        tags = tuple(TargetTag(**tag) for tag in spec["target"].pop("tags"))
        target = Target(**spec["target"], tags=tags)
        answers = []
        for hex_data in spec["images"]:
            _, outcome = predict_bytes(target, bytes.fromhex(hex_data))
            answers.append(outcome.results)
        print(json.dumps({"answers": answers, "torch": "torch" in sys.modules,
                          "timm": "timm" in sys.modules}))
        """
    )
    datas = [colour_png(colour) for colour in (RED, GREEN, BLUE)]
    spec = {"target": asdict(target), "images": [data.hex() for data in datas]}
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False and result["timm"] is False
    with default_storage.open(target.artifact_name, "rb") as handle:
        torch_model = LoadedModel(handle.read(), threads=1)
    from predictions.services.predict import score_output
    from training.ml.decode import load_rgb

    for data, answer in zip(datas, result["answers"], strict=True):
        expected = score_output(target, torch_model.run(load_rgb(data, draft_size=64))).results
        assert [row["tagId"] for row in answer] == [row["tagId"] for row in expected]
        for got, want in zip(answer, expected, strict=True):
            assert abs(got["probability"] - want["probability"]) <= 1e-4


def test_an_older_iteration_predicts_at_once_then_from_its_serving_file(trained, monkeypatch):
    import predictions.model_cache as cache_module

    cache = model_cache()
    name = serving_name(trained.iteration.artifact.name)
    assert not default_storage.exists(name)  # trained before serving files existed
    before = post(trained.url(), colour_png(RED), trained.key)
    assert before.status_code == 200, before.content
    key = (trained.iteration.pk, trained.iteration.artifact.name)
    assert isinstance(cache.get(key, lambda: (None, False)), LoadedModel)  # torch, meanwhile

    # The worker's task (what the first load asked for) writes the file; a second run is a no-op.
    assert build_serving_model(trained.iteration.pk) == "done"
    assert default_storage.exists(name)
    assert build_serving_model(trained.iteration.pk) == "done"
    assert build_serving_model(10**9) == "gone"

    monkeypatch.setattr(cache_module, "LEGACY_RECHECK_S", 0.0)
    cache.clear()
    provisional = post(trained.url(nostore=True), colour_png(RED), trained.key)
    assert provisional.status_code == 200
    assert isinstance(cache.get(key, lambda: (None, False)), ServingModel)
    after = post(trained.url(), colour_png(RED), trained.key)
    assert after.status_code == 200
    was, now = before.json()["predictions"], after.json()["predictions"]
    assert [row["tagId"] for row in now] == [row["tagId"] for row in was]
    for got, want in zip(now, was, strict=True):
        assert abs(got["probability"] - want["probability"]) <= 1e-4
    first, second = Prediction.objects.order_by("pk")
    assert abs(first.uncertainty - second.uncertainty) <= 1e-4


def test_predict_bytes_serves_a_new_iteration_from_its_serving_file(trained):
    write_serving_file(trained.iteration.artifact.name, _artifact(trained))
    model_cache().clear()
    _, outcome = predict_bytes(target_for(trained.project, trained.iteration), colour_png(GREEN))
    assert outcome.results[0]["tagName"] == "green"
    served = model_cache().get(
        (trained.iteration.pk, trained.iteration.artifact.name), lambda: (None, False)
    )
    assert isinstance(served, ServingModel)
