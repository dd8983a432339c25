"""Dataset health rules: what the cloud products advise (50 images a tag, a 1:2 balance, no
tiny images, no copies, no mislabels) checked on the data, one result per rule.

Pure logic over arrays (no Django): training.services.health reads the rows and embeddings,
calls `check_health`, and stores the results. Each result names the images that break the rule,
so the page links to the gallery showing exactly those.

Thresholds (each a product decision, written once, in `data`):
- images per tag: FAIL under 5 images (Custom Vision's floor, the Train button's own check), or
  under 15 boxes in a detection project; WARN under 50 (the advice);
- balance: WARN when the smallest tag has under half the largest tag's images (1:2);
- shortest edge under 256 px: WARN (the backbone sees 224 px; smaller is upscaled mush);
- aspect ratio over 25:1: WARN (a centre crop keeps a sliver);
- near-duplicates (training.ml.duplicates): WARN; copies with different labels: FAIL (one of
  them is wrong); copies on both sides of a training/validation split of the latest iteration:
  WARN (its figures are inflated);
- detection: images with no box and no Negative tag WARN (they train as background only when
  marked Negative); boxes under 0.1% of the image or 8 px a side WARN; boxes covering 95% of it
  WARN (image tagging fits better); a tag with 10+ boxes whose centres all sit in one cell of a
  3x3 grid WARN (the model may learn the place, not the object).
"""

from __future__ import annotations

from .boxes import huge_boxes, positional_bias, tiny_boxes
from .copies import duplicates
from .data import FAIL, NOT_IN_SPLIT, PASS, WARN, HealthData, RuleResult, TagInfo
from .images import aspect, small
from .tags import balance, images_per_tag, no_boxes, untagged


def check_health(data: HealthData) -> list[RuleResult]:
    """Every rule that applies to the project's kind, in the page's order."""
    is_detection = data.kind == "detection"
    results = [images_per_tag(data, is_detection)]
    results.append(no_boxes(data) if is_detection else untagged(data))
    results += [balance(data, is_detection), small(data), aspect(data)]
    results += duplicates(data, is_detection)
    if is_detection:
        results += [tiny_boxes(data), huge_boxes(data), positional_bias(data)]
    return results


__all__ = [
    "FAIL",
    "NOT_IN_SPLIT",
    "PASS",
    "WARN",
    "HealthData",
    "RuleResult",
    "TagInfo",
    "check_health",
]
