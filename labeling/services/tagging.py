"""Classification labels: set, add and remove an image's tags, one image or many at once.

The rules, in one place for the tagging view, the gallery's bulk actions and the API:
- multiclass: an image carries at most one tag; choosing another replaces it;
- multilabel: any number of regular tags;
- Negative ("none of these") excludes every other tag, in both kinds;
- detection projects label with regions, not image tags.
Single-image edits are compare-and-set on `Image.version`, so two annotators never overwrite each
other silently: the second gets EditConflict and reloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F

from labeling.access import require_image_role, require_role, visible_images
from labeling.models import Image, ImageTag, Project, Role, Tag
from labeling.services.labels import refresh_is_tagged
from project.errors import EditConflict, LabelRuleError, NotFound

CONFLICT_MESSAGE = (
    "Someone else changed this image's labels while you were looking. Reload to see their change."
)


class NegativeTagNotAlone(LabelRuleError):
    """The Negative tag says "none of the others": it cannot share an image with one."""

    code = "negative_tag_not_alone"


def check_tag_rules(project: Project, tags: Sequence[Tag]) -> None:
    """Raise LabelRuleError if `tags` is not a valid complete tag set for one image."""
    if project.is_detection:
        raise LabelRuleError("Detection images are labeled with boxes, not image tags.")
    if any(tag.project_id != project.pk for tag in tags):
        raise NotFound("That tag does not belong to this project.")
    if len({tag.pk for tag in tags}) != len(tags):
        raise LabelRuleError("A tag is listed twice.")
    if project.is_multiclass and len(tags) > 1:
        raise LabelRuleError("A multiclass project takes one tag per image.")
    if len(tags) > 1 and any(tag.is_negative for tag in tags):
        raise NegativeTagNotAlone("The Negative tag excludes every other tag.")


@transaction.atomic
def set_image_tags(
    *, image: Image, tags: Sequence[Tag], by: AbstractBaseUser, version: int | None
) -> Image:
    """Replace the image's tags with exactly `tags` (an empty list untags it).

    `version` is the image version the editor saw; None skips the conflict check (bulk and API
    callers that mean "whatever is there now").
    """
    require_image_role(by, image)
    check_tag_rules(image.project, tags)
    _bump_version(image, version)
    wanted = {tag.pk for tag in tags}
    current = set(ImageTag.objects.filter(image=image).values_list("tag_id", flat=True))
    ImageTag.objects.filter(image=image, tag_id__in=current - wanted).delete()
    ImageTag.objects.bulk_create(
        [ImageTag(image=image, tag_id=tag_id, created_by=by) for tag_id in wanted - current]
    )
    Image.objects.filter(pk=image.pk).update(is_tagged=bool(wanted))
    image.refresh_from_db(fields=["version", "is_tagged"])
    return image


@dataclass(frozen=True)
class TagChange:
    """One edit of the tagging view: what the image had before and has now.

    `before` is what undo puts back; `describe()` is what the annotator is told ("apple
    removed"), so a key press never changes labels without saying so.
    """

    image: Image
    before: tuple[Tag, ...]
    after: tuple[Tag, ...]

    @property
    def added(self) -> tuple[Tag, ...]:
        had = {tag.pk for tag in self.before}
        return tuple(tag for tag in self.after if tag.pk not in had)

    @property
    def removed(self) -> tuple[Tag, ...]:
        has = {tag.pk for tag in self.after}
        return tuple(tag for tag in self.before if tag.pk not in has)

    def describe(self) -> str:
        parts = [f"{tag.name} added" for tag in self.added]
        parts += [f"{tag.name} removed" for tag in self.removed]
        return ", ".join(parts) or "No change"


@transaction.atomic
def toggle_image_tag(
    *, image: Image, tag: Tag, by: AbstractBaseUser, version: int | None
) -> TagChange:
    """The tagging view's key press: add the tag, or remove it if present.

    Adding follows the kind's rules instead of refusing: in multiclass the new tag replaces the
    old one, and Negative replaces (or is replaced by) the regular tags.
    """
    current = list(Tag.objects.filter(image_tags__image=image).order_by("pk"))
    if any(t.pk == tag.pk for t in current):
        tags = [t for t in current if t.pk != tag.pk]
    elif image.project.is_multiclass or tag.is_negative:
        tags = [tag]
    else:
        tags = [t for t in current if not t.is_negative] + [tag]
    image = set_image_tags(image=image, tags=tags, by=by, version=version)
    return TagChange(image=image, before=tuple(current), after=tuple(tags))


@transaction.atomic
def restore_image_tags(
    *, image: Image, tag_ids: Sequence[int], by: AbstractBaseUser, version: int
) -> TagChange:
    """Undo (U, Ctrl+Z): give the image back the tags it had before the last change.

    `version` is the version that change produced. Compare-and-set on it, so an undo never
    throws away a later edit (someone else's, or the annotator's own from another tab): that
    answers EditConflict instead.
    """
    wanted = list(dict.fromkeys(int(i) for i in tag_ids))
    tags = list(Tag.objects.filter(project=image.project, pk__in=wanted).order_by("pk"))
    if len(tags) != len(wanted):
        raise NotFound("That tag does not belong to this project.")
    current = list(Tag.objects.filter(image_tags__image=image).order_by("pk"))
    image = set_image_tags(image=image, tags=tags, by=by, version=version)
    return TagChange(image=image, before=tuple(current), after=tuple(tags))


@transaction.atomic
def add_tags_to_images(
    *, project: Project, image_ids: Sequence[int], tags: Sequence[Tag], by: AbstractBaseUser
) -> int:
    """Bulk tag: give every listed image these tags, by the same rules as one image.

    Multiclass and Negative replace what an image had; multilabel adds to it (dropping Negative).
    Returns the number of images changed.
    """
    require_role(by, project, Role.ANNOTATOR)
    check_tag_rules(project, tags)
    if not tags:
        return 0
    # Stored predictions an annotator may not see are skipped like ids of other projects.
    images = list(visible_images(by, project).filter(pk__in=image_ids).values_list("pk", flat=True))
    replace = project.is_multiclass or any(t.is_negative for t in tags)
    if replace:
        ImageTag.objects.filter(image_id__in=images).delete()
    else:
        ImageTag.objects.filter(image_id__in=images, tag__kind=Tag.Kind.NEGATIVE).delete()
    ImageTag.objects.bulk_create(
        [ImageTag(image_id=i, tag=t, created_by=by) for i in images for t in tags],
        ignore_conflicts=True,
    )
    Image.objects.filter(pk__in=images).update(is_tagged=True, version=F("version") + 1)
    return len(images)


@transaction.atomic
def remove_tags_from_images(
    *, project: Project, image_ids: Sequence[int], tags: Sequence[Tag], by: AbstractBaseUser
) -> int:
    """Bulk untag: remove these tags (all tags if `tags` is empty) from the listed images."""
    require_role(by, project, Role.ANNOTATOR)
    if any(tag.project_id != project.pk for tag in tags):
        raise NotFound("That tag does not belong to this project.")
    # Stored predictions an annotator may not see are skipped like ids of other projects.
    images = list(visible_images(by, project).filter(pk__in=image_ids).values_list("pk", flat=True))
    labels = ImageTag.objects.filter(image_id__in=images)
    if tags:
        labels = labels.filter(tag__in=tags)
    labels.delete()
    Image.objects.filter(pk__in=images).update(version=F("version") + 1)
    refresh_is_tagged(images)
    return len(images)


def _bump_version(image: Image, version: int | None) -> None:
    """Compare-and-set: claim the next version, or fail if someone else got there first."""
    rows = Image.objects.filter(pk=image.pk)
    if version is not None:
        rows = rows.filter(version=version)
    if not rows.update(version=F("version") + 1):
        raise EditConflict(CONFLICT_MESSAGE)
