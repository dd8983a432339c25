"""Helpers shared by every service that changes an image's labels."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, OuterRef, Q

from labeling.models import Image, ImageTag, Region


def refresh_is_tagged(image_ids: Iterable[int]) -> None:
    """Recompute the denormalised `is_tagged` flag of these images from their labels."""
    ids = list(set(image_ids))
    if not ids:
        return
    has_label = Q(Exists(ImageTag.objects.filter(image=OuterRef("pk")))) | Q(
        Exists(Region.objects.filter(image=OuterRef("pk")))
    )
    Image.objects.filter(pk__in=ids).filter(has_label).update(is_tagged=True)
    Image.objects.filter(pk__in=ids).exclude(has_label).update(is_tagged=False)
