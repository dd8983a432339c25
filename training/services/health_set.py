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


def health_set(user: AbstractBaseUser, project: Project, query: Mapping[str, str]) -> ImageSet:
    key = query.get(QUERY_KEY, "")
    found = rule_images(project, key)
    if found is None:
        raise NotFound("That health rule is not in this project's latest health check.")
    title, image_ids = found
    return ImageSet(
        label=f"Health check: {title}",
        image_ids=image_ids,
        params={QUERY_KEY: key},
        back_url=reverse("training:health", args=[project.pk]),
        back_label="Health check",
        prediction=lambda image_id: None,
    )
