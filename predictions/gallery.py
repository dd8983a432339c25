"""Suggested tags in labeling's gallery, through labeling.gallery_extensions.

Registered from PredictionsConfig.ready(): labeling's gallery never imports predictions, so it
asks the registry, and this module answers with
- the filter "Has a suggestion" (`?filter=suggested`: untagged images with one waiting), in
  Most-gain order (the Predictions tab's rule: `suggestion_gain_order`), which the tagging view
  walks too, so A accepts image after image, the most useful first;
- a badge per thumbnail: the suggested tag (or box count) and its confidence, outlined as a
  guess, marked "low" below even odds or the iteration's threshold;
- a panel: the run's progress (polled while the task runs) and, for reviewers and admins,
  "Accept all at or above a confidence".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from labeling.access import has_role
from labeling.gallery_extensions import (
    ExtraFilter,
    GalleryExtension,
    ThumbNote,
    register_gallery_extension,
)
from labeling.models import Image, Project, Role
from predictions.models import Suggestion
from predictions.services.suggestions import (
    has_suggestion,
    is_low_confidence,
    suggestion_confidence,
    suggestion_gain_order,
    suggestion_progress,
)

SUGGESTED_FILTER = "suggested"
# What "Accept all at or above" starts at: most suggestions a model is this sure of are right,
# and the reviewer lowers it knowingly.
DEFAULT_MIN_CONFIDENCE = 0.9


def register() -> None:
    register_gallery_extension(
        GalleryExtension(
            name="predictions.suggestions",
            filter=ExtraFilter(
                key=SUGGESTED_FILTER,
                label="Has a suggestion",
                narrow=has_suggestion,
                order=suggestion_gain_order,
            ),
            notes=suggestion_notes,
            panel_template="predictions/_suggestion_panel.html",
            panel_context=suggestion_panel,
        )
    )


def suggestion_notes(images: Sequence[Image]) -> dict[int, list[ThumbNote]]:
    """One badge per untagged image of the page that has a suggestion (one query)."""
    ids = [image.pk for image in images if image.is_training and not image.is_tagged]
    rows = Suggestion.objects.filter(image_id__in=ids).select_related("iteration")
    return {row.image_id: [_note(row)] for row in rows}


def _note(suggestion: Suggestion) -> ThumbNote:
    confidence = suggestion_confidence(suggestion)
    low = is_low_confidence(suggestion)
    if suggestion.boxes:
        count = len(suggestion.boxes)
        what = f"{count} box{'es' if count != 1 else ''}"
        detail = ", ".join(f"{b['tagName']} {b['probability']:.2f}" for b in suggestion.boxes[:5])
    else:
        what = suggestion.tags[0]["tagName"] + (
            f" +{len(suggestion.tags) - 1}" if len(suggestion.tags) > 1 else ""
        )
        detail = ", ".join(f"{t['tagName']} {t['probability']:.2f}" for t in suggestion.tags)
    sure = "Low confidence. " if low else ""
    return ThumbNote(
        text=f"{what}? {confidence:.2f}" + (" · low" if low else ""),
        title=f"{sure}Suggested by {suggestion.iteration}: {detail}",
        css_class="suggested warn" if low else "suggested",
        testid="suggestion-badge",
    )


def suggestion_panel(request: HttpRequest, project: Project) -> dict[str, Any] | None:
    """The gallery's suggestion block, or None while the project has never had suggestions."""
    progress = suggestion_progress(project)
    if progress.run is None and not progress.waiting:
        return None
    return {
        "project": project,
        "progress": progress,
        "status_url": reverse("predictions:suggestions-status", args=[project.pk]),
        "accept_url": reverse("predictions:suggestions-accept", args=[project.pk]),
        "filter_url": reverse("labeling:project-detail", args=[project.pk])
        + f"?filter={SUGGESTED_FILTER}",
        "can_accept": has_role(request.user, project, Role.REVIEWER) and progress.waiting > 0,
        "min_confidence": DEFAULT_MIN_CONFIDENCE,
        "return_query": request.GET.urlencode(),
    }
