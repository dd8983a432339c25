"""Saved gallery filters: a gallery filter kept under a name, reopened from the gallery and
chosen for a dataset export.

Roles: any member who sees the gallery (annotator and up) may save a filter, as a bookmark of
what they are working on; its creator may delete it, and so may the project's admins (a filter
somebody else saved is shared with the whole project, so removing it is an admin's call).
Exporting by a saved filter needs what every export needs (reviewer and up:
`labeling.services.export_jobs`).

A saved filter names images by rule, not by list: the images it selects are worked out when it
is used (the gallery opens it, an export starts), so images tagged after it was saved are in
it. An export resolves it once, when it starts, and its job keeps the resolved tags and status
(and the filter's name, for the listing): deleting or changing tags while the worker runs does
not change what the job was asked for.

A tag deleted after the filter was saved drops out of it. When every tag of a filter is gone,
the filter would otherwise silently widen to every image, so using it says so instead: the
gallery shows an empty set with the reason and an export is refused (`FilterTagsGone`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.urls import reverse

from labeling.access import has_role, require_role
from labeling.image_sets import ImageSet
from labeling.models import Project, Role, SavedFilter
from labeling.services.datasets.exports import (
    ExportSelection,
    check_selection,
    selected_images,
)
from labeling.services.images import ImageFilter
from project.errors import Forbidden, NotFound, ValidationFailed

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

NAME_MAX_LENGTH = 100  # SavedFilter.name's column
# The gallery's query key for a saved filter it cannot show as its own (`?saved=<id>`).
QUERY_KEY = "saved"


class DuplicateFilterName(ValidationFailed):
    code = "duplicate_name"


class FilterTagsGone(ValidationFailed):
    code = "filter_tags_gone"


@dataclass(frozen=True)
class ResolvedFilter:
    """What a saved filter selects today: its selection without the tags deleted since."""

    saved_filter: SavedFilter
    selection: ExportSelection
    dropped_tag_ids: tuple[int, ...]  # tags it was saved with that no longer exist

    @property
    def is_empty_by_deletion(self) -> bool:
        """Every tag it named is gone: it selects nothing rather than every image."""
        return bool(self.dropped_tag_ids) and not self.selection.tag_ids


@transaction.atomic
def save_filter(
    *,
    project: Project,
    name: str,
    by: AbstractBaseUser,
    status: str = "all",
    tag_ids: Sequence[int] = (),
) -> SavedFilter:
    """Save the gallery filter `status` + `tag_ids` under `name` (unique in the project, in any
    letter case). Raises ValidationFailed for a bad name, status or tag."""
    require_role(by, project, Role.ANNOTATOR)
    name = " ".join(name.split())
    if not name:
        raise ValidationFailed("Give the filter a name.")
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationFailed(f"A filter's name has at most {NAME_MAX_LENGTH} characters.")
    selection = ExportSelection(tag_ids=tuple(sorted(set(tag_ids))), status=status or "all")
    check_selection(project, selection)
    if _name_taken(project, name):
        raise DuplicateFilterName(f"This project already has a saved filter named “{name}”.")
    try:
        # A savepoint: a concurrent save of the same name loses on the constraint, not the
        # surrounding transaction.
        with transaction.atomic():
            return SavedFilter.objects.create(
                project=project,
                name=name,
                status=selection.status,
                tag_ids=list(selection.tag_ids),
                created_by=by,
            )
    except IntegrityError:
        raise DuplicateFilterName(
            f"This project already has a saved filter named “{name}”."
        ) from None


def _name_taken(project: Project, name: str) -> bool:
    return project.saved_filters.annotate(lower=Lower("name")).filter(lower=name.lower()).exists()


@transaction.atomic
def delete_filter(*, saved_filter: SavedFilter, by: AbstractBaseUser) -> None:
    """Delete a saved filter: its creator may, and the project's admins."""
    require_role(by, saved_filter.project, Role.ANNOTATOR)
    if not can_delete_filter(by, saved_filter):
        raise Forbidden("Only the member who saved this filter, or an admin, may delete it.")
    saved_filter.delete()


def can_delete_filter(user: AbstractBaseUser, saved_filter: SavedFilter) -> bool:
    return saved_filter.created_by_id == user.pk or has_role(user, saved_filter.project, Role.ADMIN)


def get_saved_filter(project: Project, saved_filter_id: int | str) -> SavedFilter:
    """The project's saved filter (the caller has checked access to `project`)."""
    try:
        return project.saved_filters.get(pk=int(saved_filter_id))
    except (SavedFilter.DoesNotExist, ValueError, TypeError):
        raise NotFound("This project has no such saved filter.") from None


def resolve_filter(
    saved_filter: SavedFilter, *, project_tag_ids: Collection[int] | None = None
) -> ResolvedFilter:
    """The filter's selection as of now: tags deleted since it was saved drop out.

    `project_tag_ids`: the project's tag ids, when the caller has them (a list of filters
    resolves without a query each).
    """
    saved = tuple(int(pk) for pk in saved_filter.tag_ids)
    if project_tag_ids is None:
        project_tag_ids = set(
            saved_filter.project.tags.filter(pk__in=saved).values_list("pk", flat=True)
        )
    alive = set(project_tag_ids)
    return ResolvedFilter(
        saved_filter=saved_filter,
        selection=ExportSelection(
            tag_ids=tuple(pk for pk in saved if pk in alive), status=saved_filter.status
        ),
        dropped_tag_ids=tuple(pk for pk in saved if pk not in alive),
    )


def export_selection(saved_filter: SavedFilter) -> ExportSelection:
    """The selection an export of this filter takes now. FilterTagsGone when every tag it
    named was deleted (it would otherwise export every image)."""
    resolved = resolve_filter(saved_filter)
    if resolved.is_empty_by_deletion:
        raise FilterTagsGone(
            f"Every tag of the saved filter “{saved_filter.name}” has been deleted, so it "
            "selects no image. Delete the filter, or save a new one."
        )
    check_selection(saved_filter.project, resolved.selection)
    return resolved.selection


def gallery_query(resolved: ResolvedFilter) -> dict[str, str]:
    """The gallery query that opens the filter: the gallery's own (`?filter=…`, `?tag=…`) when
    its filter bar can show it, so the bar marks it and every link keeps it; otherwise (several
    tags, a status and a tag, a deleted tag) the set `?saved=<id>` (`saved_filter_set`)."""
    selection = resolved.selection
    if not resolved.dropped_tag_ids and selection.status in ImageFilter.statuses():
        if not selection.tag_ids:
            return ImageFilter(status=selection.status).as_query()
        if len(selection.tag_ids) == 1 and selection.status == "all":
            return ImageFilter(tag_id=selection.tag_ids[0]).as_query()
    return {QUERY_KEY: str(resolved.saved_filter.pk)}


def saved_filter_set(
    user: AbstractBaseUser, project: Project, query: Mapping[str, str]
) -> ImageSet | None:
    """`?saved=<id>` as a set the gallery, tagging view and box editor walk, newest first
    (registered in LabelingConfig.ready(); labeling.image_sets)."""
    saved_filter = get_saved_filter(project, query.get(QUERY_KEY, ""))
    resolved = resolve_filter(saved_filter)
    label = f"Saved filter “{saved_filter.name}”"
    if resolved.is_empty_by_deletion:
        ids: list[int] = []
        label += " (its tags were deleted)"
    else:
        ids = list(
            selected_images(project, resolved.selection)
            .order_by("-pk")
            .values_list("pk", flat=True)
        )
        if resolved.dropped_tag_ids:
            label += " (without its deleted tags)"
    gallery_url = reverse("labeling:project-detail", args=[project.pk])
    return ImageSet(
        label=label,
        image_ids=ids,
        params={QUERY_KEY: str(saved_filter.pk)},
        back_url=gallery_url,
        back_label="All images",
        prediction=lambda image_id: None,
    )


def describe(resolved: ResolvedFilter, tag_names: Mapping[int, str]) -> str:
    """ "Untagged", "cat or dog", "Tagged · cat", with a word on deleted tags."""
    if resolved.is_empty_by_deletion:
        return "Its tags were deleted: no image"
    selection = resolved.selection
    parts = []
    if selection.status != "all" or not selection.tag_ids:
        parts.append(
            {"all": "All images", "tagged": "Tagged", "untagged": "Untagged"}.get(selection.status)
            or ImageFilter(status=selection.status).status_label
        )
    if selection.tag_ids:
        parts.append(" or ".join(tag_names.get(pk, f"tag {pk}") for pk in selection.tag_ids))
    text = " · ".join(parts)
    if resolved.dropped_tag_ids:
        count = len(resolved.dropped_tag_ids)
        text += f" ({count} deleted tag{'s' if count != 1 else ''} dropped)"
    return text
