"""The seam through which apps built on labeling add to its gallery without labeling naming them.

labeling imports no other Loupe app (import-linter checks it), yet the gallery has to show what
predictions knows: suggested tags on the thumbnails, a "Has a suggestion" filter, the progress
of a suggestion run and its "accept all above a confidence" form. So the dependency points the
allowed way round: labeling defines what an extension may contribute (this module), and the app
above registers one from its `AppConfig.ready()` (predictions/apps.py). labeling's code and
templates never mention the other app, and without it the gallery simply has nothing extra.

Why a registry rather than a template library the gallery loads by name (as the tagging view
loads `prediction_hints`): a filter is not only markup. `?filter=suggested` must narrow the
queryset in the gallery *and* in the tagging view's Previous/Next walk, and be counted in the
filter bar with the others; only Python called from labeling's views can do that.

An extension contributes, each optional:
- `filter`: one more `?filter=<key>` status, listed after Untagged (see `ImageFilter`), walked
  newest first or, with `order`, in an order of the extension's (suggestions: Most gain);
- `notes`: per-thumbnail badges for one gallery page, in a constant number of queries;
- `panel_template` + `panel_context`: a block above the grid (its own htmx, its own forms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.http import HttpRequest

    from labeling.models import Image, ImageQuerySet, Project


@dataclass(frozen=True)
class ExtraFilter:
    """One more gallery filter: `?filter=<key>`, counted and walked like Tagged/Untagged."""

    key: str  # the query value; kebab-case, not "all", "tagged" or "untagged"
    label: str  # the filter bar's text
    # Narrows the project's training images to the ones this filter shows.
    narrow: Callable[[ImageQuerySet], ImageQuerySet]
    # Listed only while it matches an image (or is the active filter): no "0" pill for a
    # project that has never had, say, a suggestion.
    hide_when_empty: bool = True
    # The image ids in the order the gallery pages and the tagging view walks this filter
    # (e.g. suggested tags by Most gain); narrowed images it leaves out follow, newest first.
    # It may name images that have left the filter meanwhile (they are skipped): a walk keeps
    # its place after an accept. None: newest first, as the gallery's own filters.
    order: Callable[[Project], Sequence[int]] | None = None


@dataclass(frozen=True)
class ThumbNote:
    """A badge on one gallery thumbnail."""

    text: str
    title: str = ""  # tooltip and accessible description
    css_class: str = ""  # e.g. "warn"
    testid: str = "thumb-note"


@dataclass(frozen=True)
class GalleryExtension:
    name: str
    filter: ExtraFilter | None = None
    # `{image_id: [notes]}` for the images of one page (one query for the whole page).
    notes: Callable[[Sequence[Image]], dict[int, list[ThumbNote]]] | None = None
    # Included above the grid with `panel` set to `panel_context(request, project)`; a context
    # of None leaves the panel out (e.g. the user's role may not use it).
    panel_template: str = ""
    panel_context: Callable[[HttpRequest, Project], dict[str, Any] | None] | None = None


_extensions: dict[str, GalleryExtension] = {}


def register_gallery_extension(extension: GalleryExtension) -> None:
    """Add (or replace, by name: `ready()` may run twice in tests) a gallery extension."""
    if extension.filter is not None and extension.filter.key in ("all", "tagged", "untagged"):
        raise ValueError(f"Filter key {extension.filter.key!r} is one of the gallery's own.")
    _extensions[extension.name] = extension


def gallery_extensions() -> list[GalleryExtension]:
    return list(_extensions.values())


def extra_filters() -> list[ExtraFilter]:
    return [e.filter for e in _extensions.values() if e.filter is not None]


def extra_filter(key: str) -> ExtraFilter | None:
    return next((f for f in extra_filters() if f.key == key), None)
