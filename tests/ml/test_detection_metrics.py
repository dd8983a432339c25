"""Detection metrics: our COCO-style AP against pycocotools' COCOeval on the same boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from training.ml.detection_metrics import (
    average_precision_at,
    evaluate_detections,
    precision_recall_at,
)

NUM_TAGS = 4
SILENT_TAG = 3  # has ground truth, never detected


def _random_case(seed: int, num_images: int = 9):
    """Ground truth and detections, normalised, plus each image's (width_px, height_px).

    Detections are jittered copies of true boxes (so IoUs spread over 0.3..1), mislabelled
    copies and pure noise. Image 0 has no ground truth, only false positives.
    """
    rng = np.random.default_rng(seed)
    sizes, gts, dets = [], [], []
    for index in range(num_images):
        sizes.append((int(rng.integers(200, 800)), int(rng.integers(200, 800))))
        gt = []
        for _ in range(0 if index == 0 else int(rng.integers(1, 6))):
            w, h = rng.uniform(0.05, 0.5, size=2)
            left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            gt.append((int(rng.integers(0, NUM_TAGS)), left, top, w, h))
        det = []
        for tag, left, top, w, h in gt:
            for _ in range(int(rng.integers(0, 3))):
                if tag == SILENT_TAG:
                    continue
                jitter = rng.normal(0, 0.15, size=4) * np.array([w, h, w, h])
                nw, nh = max(w + jitter[2], 0.01), max(h + jitter[3], 0.01)
                label = tag if rng.random() > 0.15 else int(rng.integers(0, SILENT_TAG))
                det.append((label, float(rng.random()), left + jitter[0], top + jitter[1], nw, nh))
        for _ in range(int(rng.integers(0, 4))):
            w, h = rng.uniform(0.05, 0.4, size=2)
            label = int(rng.integers(0, SILENT_TAG))
            det.append((label, float(rng.random()), *rng.uniform(0, 0.6, size=2), w, h))
        gts.append(gt)
        dets.append(det)
    return sizes, gts, dets


def _cocoeval_stats(sizes, gts, dets, iou_thresholds=None) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's summary stats and its precision array, boxes given in pixels."""
    images, annotations, results = [], [], []
    for image_id, ((width, height), gt, det) in enumerate(zip(sizes, gts, dets, strict=True), 1):
        images.append({"id": image_id, "width": width, "height": height})
        for tag, left, top, w, h in gt:
            bbox = [left * width, top * height, w * width, h * height]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": tag + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
        for tag, score, left, top, w, h in det:
            bbox = [left * width, top * height, w * width, h * height]
            results.append(
                {"image_id": image_id, "category_id": tag + 1, "bbox": bbox, "score": score}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": t + 1, "name": f"tag{t}"} for t in range(NUM_TAGS)],
        }
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), iouType="bbox")
        if iou_thresholds is not None:
            evaluator.params.iouThrs = np.asarray(iou_thresholds)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats, evaluator.eval["precision"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_equals_pycocotools_cocoeval(seed):
    sizes, gts, dets = _random_case(seed)
    stats, precision = _cocoeval_stats(sizes, gts, dets)

    metrics = evaluate_detections(gts, dets, num_tags=NUM_TAGS)

    assert metrics.map == pytest.approx(stats[0], abs=1e-6)
    assert metrics.map50 == pytest.approx(stats[1], abs=1e-6)
    assert 0.05 < metrics.map50 < 0.95  # a case that actually exercises matching
    for tag in range(NUM_TAGS):
        # precision[T, R, K, area, maxDets]: area "all", 100 detections.
        coco_ap50 = precision[0, :, tag, 0, 2].mean()
        assert metrics.ap50[tag] == pytest.approx(coco_ap50, abs=1e-6)
        assert metrics.ap[tag] == pytest.approx(precision[:, :, tag, 0, 2].mean(), abs=1e-6)
    assert metrics.ap50[SILENT_TAG] == 0.0


def test_ap_at_a_chosen_overlap_equals_cocoeval_at_that_threshold():
    sizes, gts, dets = _random_case(5)
    _, precision = _cocoeval_stats(sizes, gts, dets, iou_thresholds=[0.3])

    ap = average_precision_at(gts, dets, num_tags=NUM_TAGS, overlap_threshold=0.3)

    for tag in range(NUM_TAGS):
        assert ap[tag] == pytest.approx(precision[0, :, tag, 0, 2].mean(), abs=1e-6)


def test_tag_without_ground_truth_is_left_out_of_the_mean():
    gts = [[(0, 0.1, 0.1, 0.2, 0.2)], []]
    dets = [[(0, 0.9, 0.1, 0.1, 0.2, 0.2)], [(1, 0.8, 0.5, 0.5, 0.2, 0.2)]]

    metrics = evaluate_detections(gts, dets, num_tags=2)

    assert metrics.ap50[0] == pytest.approx(1.0)
    assert metrics.ap50[1] is None
    assert metrics.map50 == pytest.approx(1.0)
    assert metrics.map == pytest.approx(1.0)


def test_precision_recall_follow_both_thresholds():
    gts = [[(0, 0.0, 0.0, 0.5, 0.5), (0, 0.5, 0.5, 0.5, 0.5)], [(1, 0.2, 0.2, 0.2, 0.2)]]
    dets = [
        [
            (0, 0.9, 0.0, 0.0, 0.5, 0.5),  # exact
            (0, 0.6, 0.5, 0.5, 0.5, 0.25),  # IoU 0.5 with the second box
            (0, 0.3, 0.0, 0.0, 0.5, 0.5),  # duplicate of the first: a false positive
        ],
        [],
    ]

    strict = precision_recall_at(
        gts, dets, num_tags=2, probability_threshold=0.5, overlap_threshold=0.6
    )
    loose = precision_recall_at(
        gts, dets, num_tags=2, probability_threshold=0.2, overlap_threshold=0.5
    )

    assert (strict[0].true_positives, strict[0].false_positives) == (1, 1)
    assert strict[0].precision == 0.5
    assert strict[0].recall == 0.5
    assert (loose[0].true_positives, loose[0].false_positives) == (2, 1)
    assert loose[0].recall == 1.0
    assert loose[0].precision == pytest.approx(2 / 3)
    assert loose[1].false_negatives == 1
    assert loose[1].recall == 0.0
    assert loose[1].precision == 0.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per image"):
        evaluate_detections([[]], [], num_tags=1)
