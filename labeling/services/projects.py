"""Projects, members, tags, and each user's REST API token (shown on the settings page)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, router, transaction
from django.db.models import Count, FileField, OuterRef, QuerySet, Subquery
from django.db.models.deletion import Collector
from django.db.models.functions import Coalesce
from rest_framework.authtoken.models import Token

from labeling.access import require_project_creator, require_role
from labeling.models import ImageTag, Membership, Project, Region, Role, Tag
from labeling.services.job_status import project_job_folders
from project.errors import Forbidden, LabelRuleError, NotFound, ValidationFailed
from project.queue import enqueue
from project.storage import files_under

logger = logging.getLogger(__name__)
User = get_user_model()

# Stored files deleted per worker task: a task stays short, and a lost one loses little.
FILE_DELETE_BATCH = 500
DELETE_FILES_TASK = "labeling.delete_stored_files"
DELETE_FOLDERS_TASK = "labeling.delete_stored_folders"


@transaction.atomic
def create_project(
    *,
    name: str,
    kind: str,
    domain: str = Project.Domain.GENERAL_COMPACT,
    description: str = "",
    by: AbstractBaseUser,
) -> Project:
    """Create a project; its creator becomes its first admin. LOUPE_PROJECT_CREATORS: who may."""
    require_project_creator(by)
    name = name.strip()
    if not name:
        raise ValidationFailed("A project needs a name.")
    if kind not in Project.Kind.values:
        raise ValidationFailed(f"Unknown project type {kind!r}.")
    if domain not in Project.Domain.values:
        raise ValidationFailed(f"Unknown domain {domain!r}.")
    project = Project.objects.create(
        name=name, kind=kind, domain=domain, description=description, owner=by
    )
    Membership.objects.create(project=project, user=by, role=Role.ADMIN)
    return project


@transaction.atomic
def update_project(
    *,
    project: Project,
    by: AbstractBaseUser,
    name: str | None = None,
    description: str | None = None,
    domain: str | None = None,
) -> Project:
    """Rename or re-describe a project. Its kind is fixed once created: labels depend on it."""
    require_role(by, project, Role.ADMIN)
    if name is not None:
        if not name.strip():
            raise ValidationFailed("A project needs a name.")
        project.name = name.strip()
    if description is not None:
        project.description = description
    if domain is not None:
        if domain not in Project.Domain.values:
            raise ValidationFailed(f"Unknown domain {domain!r}.")
        project.domain = domain
    project.save()
    return project


@transaction.atomic
def delete_project(
    *, project: Project, by: AbstractBaseUser, confirm_name: str | None = None
) -> None:
    """Delete a project with everything in it; a worker then removes its stored files.

    Admins only. The browser passes `confirm_name`, which must be the project's name (a deleted
    project cannot come back). The rows go in this transaction; the files (images, thumbnails,
    models, predictions) are collected from the rows the cascade deletes, whatever app they
    belong to, and handed to `labeling.delete_stored_files` after the commit; the folders of
    files no row names (dataset jobs, and each deleted row's `stored_folders()`: an iteration's
    serving file, maps and kept uploads) to `labeling.delete_stored_folders`. If the broker is
    down the files stay on disk as orphans (logged): never a row whose file is gone.
    """
    require_role(by, project, Role.ADMIN)
    if confirm_name is not None and confirm_name.strip() != project.name:
        raise ValidationFailed(
            f"Type the project's name, “{project.name}”, exactly to confirm the deletion."
        )
    collector = Collector(using=router.db_for_write(Project))
    collector.collect([project])
    names = sorted(set(_stored_files(collector)))
    folders = list(project_job_folders(project.pk))
    folders += sorted(set(_stored_folders(collector)))
    collector.delete()
    for start in range(0, len(names), FILE_DELETE_BATCH):
        enqueue(DELETE_FILES_TASK, names[start : start + FILE_DELETE_BATCH], queue="celery")
    enqueue(DELETE_FOLDERS_TASK, folders, queue="celery")


def _stored_folders(collector: Collector) -> Iterator[str]:
    """The `stored_folders()` of every row the collector will delete whose model has one (the
    training app's iterations; labeling does not import it, so it asks the rows)."""
    for model, instances in collector.data.items():
        if hasattr(model, "stored_folders"):
            for instance in instances:
                yield from instance.stored_folders()
    for queryset in collector.fast_deletes:
        if hasattr(queryset.model, "stored_folders"):
            for instance in queryset:
                yield from instance.stored_folders()


def _stored_files(collector: Collector) -> Iterator[str]:
    """Names of every stored file referenced by the rows the collector will delete."""
    for model, instances in collector.data.items():
        fields = [f.attname for f in model._meta.concrete_fields if isinstance(f, FileField)]
        for instance in instances:
            yield from (str(getattr(instance, f)) for f in fields if getattr(instance, f))
    for queryset in collector.fast_deletes:
        fields = [
            f.attname for f in queryset.model._meta.concrete_fields if isinstance(f, FileField)
        ]
        for values in queryset.values_list(*fields) if fields else ():
            yield from (str(name) for name in values if name)


@transaction.atomic
def add_member(
    *, project: Project, username: str, role: str, by: AbstractBaseUser, password: str | None = None
) -> Membership:
    """Add an existing user to the project, or create the account when a password is given."""
    require_role(by, project, Role.ADMIN)
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}.")
    username = username.strip()
    user = User.objects.filter(username=username).first()
    if user is None:
        if not password:
            raise NotFound(
                f"There is no user called {username!r}. Give a password to create the account."
            )
        if len(password) < 8:
            raise ValidationFailed("A new account's password needs at least 8 characters.")
        user = User.objects.create_user(username=username, password=password)
    membership, created = Membership.objects.get_or_create(
        project=project, user=user, defaults={"role": role}
    )
    if not created:
        raise ValidationFailed(f"{username} is already a member of this project.")
    return membership


@transaction.atomic
def set_member_role(*, membership: Membership, role: str, by: AbstractBaseUser) -> Membership:
    require_role(by, membership.project, Role.ADMIN)
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}.")
    if membership.role == Role.ADMIN and role != Role.ADMIN:
        _keep_one_admin(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def remove_member(*, membership: Membership, by: AbstractBaseUser) -> None:
    require_role(by, membership.project, Role.ADMIN)
    if membership.role == Role.ADMIN:
        _keep_one_admin(membership)
    membership.delete()


def _keep_one_admin(membership: Membership) -> None:
    others = (
        Membership.objects.select_for_update()
        .filter(project=membership.project, role=Role.ADMIN)
        .exclude(pk=membership.pk)
    )
    if not others.exists():
        raise LabelRuleError("A project keeps at least one admin.")


class TagNameTaken(ValidationFailed):
    """Another tag of the project has this name (names compare case-insensitively)."""

    code = "tag_name_taken"


class NegativeTagExists(ValidationFailed):
    """A project has at most one Negative tag."""

    code = "negative_tag_exists"


@transaction.atomic
def create_tag(
    *,
    project: Project,
    name: str,
    by: AbstractBaseUser,
    kind: str = Tag.Kind.REGULAR,
    description: str = "",
) -> Tag:
    require_role(by, project, Role.ADMIN)
    name = name.strip()
    if not name:
        raise ValidationFailed("A tag needs a name.")
    if kind not in Tag.Kind.values:
        raise ValidationFailed(f"Unknown tag kind {kind!r}.")
    if project.tags.filter(name__iexact=name).exists():
        raise TagNameTaken(f"There is already a tag called {name!r}.")
    if kind == Tag.Kind.NEGATIVE and project.tags.filter(kind=Tag.Kind.NEGATIVE).exists():
        raise NegativeTagExists("This project already has a Negative tag.")
    try:
        with transaction.atomic():
            return Tag.objects.create(
                project=project, name=name, kind=kind, description=description
            )
    except IntegrityError:
        raise TagNameTaken(f"There is already a tag called {name!r}.") from None


@transaction.atomic
def update_tag(
    *, tag: Tag, by: AbstractBaseUser, name: str | None = None, description: str | None = None
) -> Tag:
    require_role(by, tag.project, Role.ADMIN)
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationFailed("A tag needs a name.")
        if tag.project.tags.filter(name__iexact=name).exclude(pk=tag.pk).exists():
            raise TagNameTaken(f"There is already a tag called {name!r}.")
        tag.name = name
    if description is not None:
        tag.description = description
    tag.save()
    return tag


@transaction.atomic
def delete_tag(*, tag: Tag, by: AbstractBaseUser) -> None:
    """Delete a tag and its labels; images left with no label become untagged again."""
    from labeling.services.labels import refresh_is_tagged

    require_role(by, tag.project, Role.ADMIN)
    image_ids = list(tag.image_tags.values_list("image_id", flat=True))
    image_ids += list(tag.regions.values_list("image_id", flat=True))
    tag.delete()
    refresh_is_tagged(image_ids)


# --- Lookups scoped to a project the caller already got through `access_project` -------------


def get_tag(project: Project, tag_id: int | str) -> Tag:
    """The project's tag with this id; NotFound otherwise (another project's id never leaks)."""
    tag = _scoped(project.tags.all(), tag_id)
    if tag is None:
        raise NotFound("This tag does not exist in this project.")
    return tag


def get_tags(project: Project, tag_ids: Sequence[int]) -> list[Tag]:
    """The project's tags with these ids, in the order given; NotFound if one is not there."""
    wanted = list(dict.fromkeys(tag_ids))
    found = {tag.pk: tag for tag in project.tags.filter(pk__in=wanted)}
    missing = [tag_id for tag_id in wanted if tag_id not in found]
    if missing:
        raise NotFound(f"Tag {missing[0]} does not exist in this project.")
    return [found[tag_id] for tag_id in wanted]


def get_membership(project: Project, membership_id: int | str) -> Membership:
    membership = _scoped(project.memberships.select_related("user", "project"), membership_id)
    if membership is None:
        raise NotFound("This member does not exist in this project.")
    return membership


def _scoped(queryset: QuerySet[Any], pk: int | str) -> Any:
    try:
        return queryset.filter(pk=int(pk)).first()
    except (TypeError, ValueError):
        return None


def tags_with_image_counts(project: Project) -> QuerySet[Tag]:
    """The project's tags, each with `image_count`: images carrying it as a tag or a box.

    Two correlated subqueries rather than JOIN + COUNT(DISTINCT), so a tag on 20k images costs
    one index range scan each and the list stays one query.
    """
    tagged = (
        ImageTag.objects.filter(tag=OuterRef("pk"))
        .order_by()
        .values("tag")
        .annotate(n=Count("image", distinct=True))
        .values("n")
    )
    boxed = (
        Region.objects.filter(tag=OuterRef("pk"))
        .order_by()
        .values("tag")
        .annotate(n=Count("image", distinct=True))
        .values("n")
    )
    return project.tags.annotate(
        image_count=Coalesce(Subquery(tagged), 0) + Coalesce(Subquery(boxed), 0)
    )


# --- API tokens ------------------------------------------------------------------------------


@transaction.atomic
def regenerate_api_token(*, user: AbstractBaseUser) -> Token:
    """Give the user a new REST API token; the old one stops working at once."""
    if not user.is_authenticated:
        raise Forbidden("Log in to get an API token.")
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


def delete_stored_files(names: Sequence[str]) -> int:
    """The worker's side of `delete_project`: remove the files; returns how many it removed.

    A file that is already gone is fine (a redelivered task); one that cannot be removed is
    logged and left, never raised: the rest of the batch still goes.
    """
    from django.core.files.storage import default_storage

    removed = 0
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete stored file %s", name, exc_info=True)
        else:
            removed += 1
    return removed


def delete_stored_folders(folders: Sequence[str]) -> int:
    """The worker's side of `delete_project` for folders: every file below each; returns how
    many it removed (delete_stored_files' rules: gone is fine, a failure is logged)."""
    return sum(delete_stored_files(files_under(folder)) for folder in folders)
