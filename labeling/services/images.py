"""Deleting images (reviewers and admins) and the files that go with them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from labeling.access import require_role
from labeling.models import Image, Project, Role

logger = logging.getLogger(__name__)


def delete_images(*, project: Project, image_ids: Sequence[int], by: AbstractBaseUser) -> int:
    """Delete the listed images of the project with their labels and files; returns the count.

    Rows go first, in one transaction; files are removed after it commits, so a failed delete
    never leaves a row pointing at a missing file.
    """
    require_role(by, project, Role.REVIEWER)
    with transaction.atomic():
        images = list(project.images.filter(pk__in=image_ids).only("pk", "file", "thumbnail"))
        files = [f for image in images for f in (image.file, image.thumbnail) if f]
        Image.objects.filter(pk__in=[image.pk for image in images]).delete()
    for field in files:
        try:
            field.storage.delete(field.name)
        except OSError:
            logger.warning("Could not delete file %s of a deleted image", field.name,
                           exc_info=True)
    return len(images)
