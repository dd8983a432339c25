"""An iteration's figures at its saved threshold: the iterations list, the Train tab, compare.

The performance page moves its threshold in the browser; everywhere else an iteration is summed
up at the threshold an admin saved for it (`suggested_threshold`, 0.5 until then), and says so.
The list must stay one query per page whatever the number of iterations, so the headline
(precision, recall at that threshold; mAP does not depend on it) is kept in `metrics`: the
worker stores figures at the threshold it trained with, and saving another threshold stores
`metrics["at_threshold"]`. Rows from before that key existed are computed from their scores.
"""

from __future__ import annotations

from typing import Any

from training.models import Iteration
from training.services.pipelines import pipeline_for

# What the worker's stored metrics were computed at, when they do not say (classification:
# training.services.runner computes them at 0.5; detection records `probability_threshold`).
TRAINED_THRESHOLD = 0.5
# A difference in the compare page smaller than this is shown as no change (figures show 3
# decimals).
SAME = 0.0005


def threshold_figures(iteration: Iteration) -> dict[str, Any]:
    """Overall and per-tag figures at the saved threshold, from the iteration's stored scores."""
    return pipeline_for(iteration.project).threshold_figures(
        iteration, iteration.suggested_threshold
    )


def headline(iteration: Iteration) -> dict[str, Any] | None:
    """{threshold, precision, recall, map} at the saved threshold; None if not completed."""
    if not iteration.is_completed:
        return None
    metrics = iteration.metrics or {}
    threshold = iteration.suggested_threshold
    cached = metrics.get("at_threshold")
    if cached and abs(cached["threshold"] - threshold) < 1e-9:
        return {**cached, "map": metrics.get("map")}
    trained_at = metrics.get("probability_threshold", TRAINED_THRESHOLD)
    if "precision" in metrics and abs(trained_at - threshold) < 1e-9:
        return {
            "threshold": threshold,
            "precision": metrics.get("precision"),
            "recall": metrics.get("recall"),
            "map": metrics.get("map"),
        }
    figures = threshold_figures(iteration)
    return {
        "threshold": threshold,
        "precision": figures.get("precision"),
        "recall": figures.get("recall"),
        "map": metrics.get("map"),
    }


def remember_headline(iteration: Iteration) -> None:
    """Store precision and recall at the (just saved) threshold in `metrics["at_threshold"]`."""
    figures = threshold_figures(iteration)
    metrics = dict(iteration.metrics or {})
    metrics["at_threshold"] = {
        "threshold": iteration.suggested_threshold,
        "precision": figures.get("precision"),
        "recall": figures.get("recall"),
    }
    Iteration.objects.filter(pk=iteration.pk).update(metrics=metrics)
    iteration.metrics = metrics


def compare(first: Iteration, second: Iteration) -> dict[str, Any]:
    """Two iterations side by side at their saved thresholds, with each figure's change.

    Tags are matched by name; `change` is second minus first, with `trend` "up", "down" or
    "same" for the page's colours. Precision is None where nothing was predicted.
    """
    figures = [threshold_figures(first), threshold_figures(second)]
    overall = {"name": "Overall", "a": _pick(figures[0], "map"), "b": _pick(figures[1], "map")}
    by_name: dict[str, dict[str, Any]] = {}
    for side, side_figures in zip(("a", "b"), figures, strict=True):
        for tag in side_figures.get("per_tag", []):
            by_name.setdefault(tag["name"], {"name": tag["name"]})[side] = _pick(tag, "ap")
    rows = sorted(by_name.values(), key=lambda row: row["name"].lower())
    for row in [overall, *rows]:
        row["change"] = _changes(row.get("a"), row.get("b"))
    return {"overall": overall, "rows": rows}


def _pick(figures: dict[str, Any], ap_key: str) -> dict[str, Any]:
    return {
        "precision": figures.get("precision"),
        "recall": figures.get("recall"),
        "ap": figures.get(ap_key),
    }


def _changes(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key in ("precision", "recall", "ap"):
        before, after = (a or {}).get(key), (b or {}).get(key)
        if before is None or after is None:
            changes[key] = None
            continue
        delta = after - before
        trend = "up" if delta >= SAME else "down" if delta <= -SAME else "same"
        changes[key] = {"delta": delta, "trend": trend}
    return changes
