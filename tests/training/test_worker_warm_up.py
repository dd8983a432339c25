"""The training worker builds the engines its projects' backbones need when it starts, so the
first training finds them built; a training that arrives stops the warm-up."""

from __future__ import annotations

import pytest
import torch

from tests.factories import ProjectFactory
from training import tasks
from training.ml import features


@pytest.fixture(autouse=True)
def _fresh_engines(monkeypatch):
    threads = torch.get_num_threads()  # the warm-up sets the train worker's count for good
    features._stock_engine_cached.cache_clear()
    monkeypatch.setattr(tasks, "_warm_stop", type(tasks._warm_stop)())
    yield
    features._stock_engine_cached.cache_clear()
    torch.set_num_threads(threads)


@pytest.mark.django_db
def test_warm_up_builds_the_engine_a_training_uses(settings):
    settings.LOUPE_DEVICE = "cpu"
    ProjectFactory(domain="general_compact")
    assert tasks._backbones_to_warm() == ["lite0-levels"]
    tasks._warm_up()
    built = features._stock_engine_cached.cache_info().currsize
    assert built == 1
    # embed_images asks for exactly this engine: found, not built again.
    engine = features.stock_engine("lite0-levels", device=settings.LOUPE_DEVICE)
    assert features._stock_engine_cached.cache_info().currsize == 1
    assert engine is features.stock_engine("lite0-levels", device="cpu")


@pytest.mark.django_db
def test_an_empty_server_warms_general_and_a_training_stops_the_warm_up(settings):
    assert tasks._backbones_to_warm() == ["lite2-levels"]
    tasks._stop_warming()
    tasks._warm_up()
    assert features._stock_engine_cached.cache_info().currsize == 0
