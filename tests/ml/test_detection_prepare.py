"""Detection training's budgeted, resumable preparation: it trains on what is ready, keeps the
plain views on disk for the next run, and says where the time went when nothing fits."""

from __future__ import annotations

import pytest
import torch

from tests.ml.test_detection import TINY, _toy_dataset
from training.ml.detection import TrainOptions, build_detector, train_detector
from training.ml.detection.cached import cache_view
from training.ml.detection.prepare import MapStore, decode_for_training
from training.ml.errors import BudgetExhausted


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _train(refs, boxes, **kwargs):
    options = kwargs.pop("options", TrainOptions(max_epochs=2, batch_size=4))
    return train_detector(
        refs, boxes, num_tags=2, backbone="lite0", config=TINY, options=options, **kwargs
    )


def test_training_starts_on_the_images_ready_at_the_preparation_deadline():
    refs, boxes = _toy_dataset(count=20)
    # A preparation share this small passes its deadline after the first image.
    options = TrainOptions(max_epochs=2, batch_size=4, max_prepare_share=1e-6)

    result = _train(refs, boxes, budget_s=120, options=options)

    assert result.training_images + len(result.holdout_detections) == 20
    assert result.trained_images == 1 < result.training_images
    assert result.epochs == 2
    assert result.timings["preparing_s"] > 0 and result.timings["training_s"] > 0


def test_plain_views_are_kept_and_reused_by_the_next_run(tmp_path):
    refs, boxes = _toy_dataset(count=10)
    store = MapStore(tmp_path, backbone="lite0", config=TINY, max_bytes=10**9)

    first = _train(refs, boxes, budget_s=120, map_store=store)
    again = MapStore(tmp_path, backbone="lite0", config=TINY, max_bytes=10**9)
    second = _train(refs, boxes, budget_s=120, map_store=again)

    assert first.maps_loaded == 0 and first.trained_images == first.training_images == 8
    assert second.maps_loaded == 8
    assert second.timings["prepare_per_image_s"] == 0.0  # nothing computed the second time
    # A stored view is the view computed now, boxes included (they follow the stored size).
    model = build_detector("lite0", 2, TINY).eval()
    image = decode_for_training(refs[0], boxes[0], TINY)
    fresh = cache_view(model, *image.parts(), augment=None)
    maps, size = again.get(refs[0].key)
    assert size == fresh.image_size
    for stored, computed in zip(maps, fresh.features, strict=True):
        assert torch.allclose(stored.float(), computed.float(), atol=2e-2, rtol=1e-2)


def test_the_map_store_stays_within_its_bound(tmp_path):
    refs, boxes = _toy_dataset(count=10)
    store = MapStore(tmp_path, backbone="lite0", config=TINY, max_bytes=60_000)

    _train(refs, boxes, budget_s=120, map_store=store)

    stored = list(store.dir.glob("*/*.pt"))
    assert 0 < len(stored) < 8
    assert sum(path.stat().st_size for path in stored) <= 60_000


def test_decoding_happens_once_at_the_training_resolution():
    refs, boxes = _toy_dataset(count=1)

    image = decode_for_training(refs[0], boxes[0], TINY)

    # 128x96 fits the detector's 96 px shorter side / 128 px longer side as is.
    assert tuple(image.pixels.shape) == (3, 96, 128)
    left, top, width, height = boxes[0][0][1:]
    assert image.boxes[0].tolist() == pytest.approx(
        [left * 128, top * 96, (left + width) * 128, (top + height) * 96], abs=1e-3
    )


def test_a_budget_with_no_room_for_one_pass_says_where_it_went():
    refs, boxes = _toy_dataset(count=10)

    with pytest.raises(BudgetExhausted) as caught:
        _train(refs, boxes, budget_s=1.0)

    spent = caught.value.spent_s
    assert set(spent) == {"preparing images", "training", "held back for scoring"}
    assert spent["preparing images"] > 0 and spent["held back for scoring"] > 0
