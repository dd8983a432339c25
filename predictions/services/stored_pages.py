"""Keyset pages of an iteration's open stored predictions, in the Predictions tab's orders
(predictions.services.ranking), for the native API: a client walks the list with `after` set
to the previous page's `next_cursor`, as it walks the image list.

Each cursor says where the last page ended in its own order, so a reviewer who promotes or
dismisses rows while paging neither skips nor sees again a row that stayed open:
- "newest": the last id (ids only grow);
- "lowest"/"highest": the last (probability, prediction id), read off the score index;
- "gain": Most gain's order depends on the whole open set, and promoting one row recomputes it
  for the tab. A first page therefore keeps the order it was cut from (a snapshot in the cache,
  SNAPSHOT_S) and the cursor names it and the position reached; later pages continue in that
  snapshot, leaving out rows that are no longer open. With the snapshot gone (expired, or a
  cursor taken to another web process with a per-process cache) the walk goes on in the
  current order after the last row shown, or at its position when that row left.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Q

from labeling.models import Project
from predictions.models import Prediction, PredictionScore
from predictions.services.ranking import SORTS, GainOrder, gain_reason, open_gain_order
from project.errors import BadCursor, ValidationFailed
from project.ids import whole_number
from training.models import Iteration

SNAPSHOT_S = 3600  # a reviewer's sitting: a walk that takes longer goes on in the current order

_BAD_CURSOR = "This cursor is not one this list gave (or belongs to another sort); start again."


@dataclass(frozen=True)
class CursorPage:
    predictions: list[Prediction]
    next_cursor: str | None
    count: int  # open predictions of the iteration (for lowest/highest: with a score for the tag)
    reasons: dict[int, str] = field(default_factory=dict)  # Most gain only, by prediction id


def stored_prediction_page(
    *,
    project: Project,
    iteration_id: int,
    sort: str = "gain",
    tag_id: int | None = None,
    after: str | None = None,
    size: int = 40,
) -> CursorPage:
    """The page of open predictions after the cursor `after` (None: the first page)."""
    if sort not in SORTS:
        raise ValidationFailed("Choose a sort: most gain, newest, or a tag's probability.")
    open_rows = Prediction.objects.open().filter(project=project, iteration_id=iteration_id)
    if sort == "gain":
        return _gain_page(project, iteration_id, after, size)
    if sort == "newest":
        last = _parse(after, "n", 1)
        rows = open_rows.newest()
        if last:
            rows = rows.filter(pk__lt=int(last[0]))
        ids = list(rows.values_list("pk", flat=True)[: size + 1])
        return _page(ids, size, lambda pk: f"n:{pk}", open_rows.count())
    if tag_id is None:
        raise ValidationFailed("Choose the tag to sort by.")
    scores = PredictionScore.objects.filter(iteration_id=iteration_id, tag_id=tag_id, is_open=True)
    count = scores.count()
    rising = sort == "lowest"
    scores = scores.order_by(
        *(("probability", "prediction_id") if rising else ("-probability", "-prediction_id"))
    )
    last = _parse(after, "p", 2)
    if last:
        probability, pk = float(last[0]), int(last[1])
        if rising:
            scores = scores.filter(
                Q(probability__gt=probability) | Q(probability=probability, prediction_id__gt=pk)
            )
        else:
            scores = scores.filter(
                Q(probability__lt=probability) | Q(probability=probability, prediction_id__lt=pk)
            )
    rows = list(scores.values_list("prediction_id", "probability")[: size + 1])
    probability_of = dict(rows)
    return _page([pk for pk, _ in rows], size, lambda pk: f"p:{probability_of[pk]!r}:{pk}", count)


def _parse(after: str | None, kind: str, parts: int) -> list[str]:
    """The cursor's fields after its sort letter; [] for no cursor; BadCursor when it is not
    one of this sort's."""
    if not after:
        return []
    fields = after.split(":")
    if len(fields) != parts + 1 or fields[0] != kind:
        raise BadCursor(_BAD_CURSOR)
    # n:<id>, p:<probability>:<id>, g:<snapshot>:<position>:<id>; positions and ids are
    # whole numbers the database takes (a negative position would never move the walk on).
    whole = fields[1:] if kind == "n" else fields[2:]
    if any(whole_number(f) is None for f in whole):
        raise BadCursor(_BAD_CURSOR)
    if kind == "p":
        try:
            probability = float(fields[1])
        except ValueError:
            raise BadCursor(_BAD_CURSOR) from None
        if not math.isfinite(probability):
            raise BadCursor(_BAD_CURSOR)
    return fields[1:]


def _page(ids: list[int], size: int, cursor_of: Callable[[int], str], count: int) -> CursorPage:
    more = len(ids) > size
    ids = ids[:size]
    return CursorPage(_rows(ids), cursor_of(ids[-1]) if more and ids else None, count)


def _rows(ids: list[int]) -> list[Prediction]:
    rows = Prediction.objects.filter(pk__in=ids).select_related("image").defer("embedding")
    by_id = {row.pk: row for row in rows}
    return [by_id[pk] for pk in ids if pk in by_id]


def _gain_page(project: Project, iteration_id: int, after: str | None, size: int) -> CursorPage:
    iteration = Iteration.objects.filter(project=project, pk=iteration_id).first()
    fields = _parse(after, "g", 3)
    if iteration is None:
        return CursorPage([], None, 0)
    open_rows = Prediction.objects.open().filter(iteration_id=iteration.pk)
    token, start = (fields[0], int(fields[1])) if fields else ("", 0)
    gain: GainOrder | None = cache.get(_snapshot_key(token)) if token else None
    if gain is None:
        gain = open_gain_order(iteration, open_rows, detection=project.is_detection)
        if fields:  # the snapshot is gone: go on after the last row shown, in today's order
            last = int(fields[2])
            start = gain.ids.index(last) + 1 if last in gain.ids else min(start, len(gain.ids))
        token = secrets.token_urlsafe(9)
        cache.set(_snapshot_key(token), gain, SNAPSHOT_S)
    ranked = gain.ids[: min(gain.total, len(gain.ids))]
    taken: list[tuple[int, int]] = []  # (position, id) of open rows, in order
    position = start
    while position < len(ranked) and len(taken) <= size:
        chunk = ranked[position : position + 2 * size]  # never empty: position < len(ranked)
        still_open = set(open_rows.filter(pk__in=chunk).values_list("pk", flat=True))
        taken += [(position + i, pk) for i, pk in enumerate(chunk) if pk in still_open]
        position += len(chunk)
    more = len(taken) > size
    taken = taken[:size]
    rows = _rows([pk for _, pk in taken])
    at = {pk: index for index, pk in taken}
    reasons = {row.pk: gain_reason(project, iteration, gain, at[row.pk], row) for row in rows}
    for row in rows:
        row.gain_reason = reasons[row.pk]
    cursor = f"g:{token}:{taken[-1][0] + 1}:{taken[-1][1]}" if more and taken else None
    return CursorPage(rows, cursor, open_rows.count(), reasons)


def _snapshot_key(token: str) -> str:
    return f"most-gain-walk:{token}"
