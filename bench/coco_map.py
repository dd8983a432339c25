"""mAP by pycocotools' COCOeval for the detection benches: one place that turns Loupe's
normalised boxes into COCO's pixel boxes, so every bench scores detections the same way."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence


def coco_map(
    sizes: Sequence[tuple[int, int]],
    truths: Sequence[Sequence[tuple]],
    found: Sequence[Sequence[tuple]],
    tag_names: Sequence[str],
) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@0.5) of `found` against `truths`, image by image.

    sizes: (width_px, height_px) per image. truths: (tag, left, top, width, height) per box and
    found: (tag, score, left, top, width, height), tags as indexes into `tag_names`, boxes
    normalised 0..1 (Custom Vision's convention). COCOeval answers -1 when no tag has a box.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, ((width, height), gt, det) in enumerate(
        zip(sizes, truths, found, strict=True), 1
    ):
        images.append({"id": image_id, "width": width, "height": height})
        for tag, left, top, w, h in gt:
            bbox = [left * width, top * height, w * width, h * height]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(tag) + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
        for tag, score, left, top, w, h in det:
            bbox = [left * width, top * height, w * width, h * height]
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(tag) + 1,
                    "bbox": bbox,
                    "score": float(score),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": t + 1, "name": n} for t, n in enumerate(tag_names)],
        }
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results) if results else COCO(), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0]), float(evaluator.stats[1])
