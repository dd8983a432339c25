"""`?health=<rule key>`: the images one health rule names, as a set the gallery shows.

labeling's gallery narrows its grid to a registered image set (labeling.image_sets); this is the
provider for the health check's links, read from the stored report (no recomputation).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth.base_user import AbstractBaseUser
from django.urls import reverse

from labeling.image_sets import ImageSet
from labeling.models import Project
from project.errors import NotFound
from training.services.health import QUERY_KEY, rule_images

# The gallery narrows its grid with `pk IN (...)`: SQLite takes at most 32,766 variables in one
# query, so a rule naming more images (untagged ones in a big upload) shows the first ones.
MAX_IMAGES = 10_000


def health_set(user: AbstractBaseUser, project: Project, query: Mapping[str, str]) -> ImageSet:
    key = query.get(QUERY_KEY, "")
    found = rule_images(project, key)
    if found is None:
        raise NotFound("That health rule is not in this project's latest health check.")
    title, image_ids = found
    label = f"Health check: {title}"
    if len(image_ids) > MAX_IMAGES:
        label += f" (the first {MAX_IMAGES:,} of {len(image_ids):,})"
    return ImageSet(
        label=label,
        image_ids=image_ids[:MAX_IMAGES],
        params={QUERY_KEY: key},
        back_url=reverse("training:health", args=[project.pk]),
        back_label="Health check",
        prediction=lambda image_id: None,
    )
