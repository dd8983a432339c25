"""Each health rule on a crafted dataset: the rule's status and exactly the images it names."""

from __future__ import annotations

import numpy as np

from training.ml.health import FAIL, PASS, WARN, HealthData, RuleResult, TagInfo, check_health

CAT, DOG, NEG = TagInfo(1, "cat"), TagInfo(2, "dog"), TagInfo(3, "Negative", is_negative=True)


def _data(labels: list[list[int]], **kw: object) -> HealthData:
    n = len(labels)
    rows = [r for r, tags in enumerate(labels) for _ in tags]
    tags = [t for ts in labels for t in ts]
    base: dict[str, object] = {
        "kind": "multiclass",
        "tags": [CAT, DOG, NEG],
        "image_ids": np.arange(100, 100 + n),
        "widths": np.full(n, 640),
        "heights": np.full(n, 480),
        "label_rows": np.array(rows, dtype=np.int64),
        "label_tags": np.array(tags, dtype=np.int64),
    }
    base.update(kw)
    return HealthData(**base)  # type: ignore[arg-type]


def _rule(data: HealthData, key: str) -> RuleResult:
    return next(r for r in check_health(data) if r.key == key)


def test_images_per_tag_fails_under_five_warns_under_fifty_and_passes_at_fifty() -> None:
    few = _rule(_data([[1]] * 60 + [[2]] * 3 + [[3]]), "images-per-tag")
    assert few.status == FAIL
    assert "“dog” (3 images)" in few.message and "“Negative” (1 image)" in few.message
    assert few.image_ids == tuple(range(160, 164))
    some = _rule(_data([[1]] * 60 + [[2]] * 20), "images-per-tag")
    assert some.status == WARN and "“dog” (20 images)" in some.message
    assert some.image_ids == tuple(range(160, 180))
    assert _rule(_data([[1]] * 50 + [[2]] * 50), "images-per-tag").status == PASS


def test_untagged_images_are_counted() -> None:
    rule = _rule(_data([[1]] * 5 + [[]] * 2 + [[2]] * 5), "untagged")
    assert rule.status == WARN and rule.message.startswith("2 images have no tag")
    assert rule.image_ids == (105, 106)
    assert _rule(_data([[1], [2]]), "untagged").status == PASS


def test_balance_names_both_tags_and_how_many_images_fix_it() -> None:
    rule = _rule(_data([[1]] * 100 + [[2]] * 20), "balance")
    assert rule.status == WARN
    assert "“dog” has 20 images and “cat” 100" in rule.message
    assert "30 more images of “dog” would bring it to 1:2" in rule.message
    assert rule.image_ids == tuple(range(200, 220))
    assert _rule(_data([[1]] * 100 + [[2]] * 50), "balance").status == PASS


def test_small_images_and_extreme_aspect_ratios() -> None:
    data = _data(
        [[1]] * 4, widths=np.array([640, 255, 5200, 256]), heights=np.array([480, 900, 200, 256])
    )
    small = _rule(data, "small-images")
    assert small.status == WARN and small.image_ids == (101, 102)
    aspect = _rule(data, "aspect-ratio")
    assert aspect.status == WARN and aspect.image_ids == (102,)


def test_duplicates_conflicts_and_leakage() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6, 32)).astype(np.float32)
    emb[1] = emb[0] + 0.01  # same label: a plain duplicate
    emb[4] = emb[3] + 0.01  # different labels: a conflict
    labels = [[1], [1], [2], [1], [2], [2]]
    data = _data(labels, embeddings=emb, embedded_rows=np.arange(6))
    dups = _rule(data, "near-duplicates")
    assert dups.status == WARN and dups.image_ids == (100, 101, 103, 104)
    conflict = _rule(data, "label-conflicts")
    assert conflict.status == FAIL and conflict.image_ids == (103, 104)
    assert _rule(data, "leakage").status == PASS  # no iteration yet
    folds = np.array([0, 0, 1, 1, 2, -2])
    split = _data(
        labels, embeddings=emb, embedded_rows=np.arange(6), side=folds, iteration_name="Iteration 2"
    )
    leak = _rule(split, "leakage")
    assert leak.status == WARN and leak.image_ids == (103, 104) and "Iteration 2" in leak.message
    apart = _rule(
        _data([[1]] * 6, embeddings=rng.standard_normal((6, 32)), embedded_rows=np.arange(6)),
        "near-duplicates",
    )
    assert apart.status == PASS


def test_detection_rules() -> None:
    # rows: 0..14 one car box each at the top-left ninth; 15 no box; 16 Negative; 17 tiny; 18 huge
    box_rows = [*list(range(15)), 17, 18]
    boxes = [[0.05, 0.05, 0.2, 0.2]] * 15 + [[0.5, 0.5, 0.01, 0.01], [0.0, 0.0, 1.0, 0.98]]
    data = HealthData(
        kind="detection",
        tags=[CAT, DOG, NEG],
        image_ids=np.arange(19),
        widths=np.full(19, 640),
        heights=np.full(19, 480),
        label_rows=np.array([16]),
        label_tags=np.array([3]),
        box_rows=np.array(box_rows),
        box_tags=np.array([1] * 15 + [2, 2]),
        boxes=np.array(boxes),
    )
    per_tag = _rule(data, "images-per-tag")
    assert per_tag.status == FAIL and "“dog” (2 boxes)" in per_tag.message
    assert "Negative" not in per_tag.message  # "no objects" images are optional in detection
    assert "“cat”" not in per_tag.message.split("recommended")[0].split(":")[1]
    assert _rule(data, "no-boxes").image_ids == (15,)
    assert _rule(data, "tiny-boxes").image_ids == (17,)
    assert _rule(data, "huge-boxes").image_ids == (18,)
    bias = _rule(data, "positional-bias")
    assert bias.status == WARN and "“cat”" in bias.message and bias.image_ids == tuple(range(15))
