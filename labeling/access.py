"""The permission funnel: every view and API endpoint looks projects and images up through here.

A user who is not a member of a project gets NotFound (404) for anything of it, so ids don't
leak; a member whose role is too low gets Forbidden (403). Superusers (the installation's
`admin` account) act as admins of every project.

Stored predictions (images the prediction API kept, `is_training=False` until a reviewer moves
them into the training data) are reviewer-and-up, as the Predictions tab is: an annotator gets
403 for one by id (page, API, box editor) and never sees one in a listing or under /media/.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet

from labeling.models import ROLE_RANK, Image, ImageQuerySet, Membership, Project, Role
from project.errors import Forbidden, NotFound
from project.ids import parse_optional_id

UserLike = AbstractBaseUser | AnonymousUser


def role_in(user: UserLike, project: Project) -> Role | None:
    """The user's role in the project, or None if they are not a member."""
    if not user.is_authenticated:
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    cached = getattr(project, "_role_cache", {})
    if user.pk in cached:
        return cached[user.pk]
    role = (
        Membership.objects.filter(project=project, user_id=user.pk)
        .values_list("role", flat=True)
        .first()
    )
    result = Role(role) if role else None
    cached[user.pk] = result
    project._role_cache = cached  # type: ignore[attr-defined]
    return result


def has_role(user: UserLike, project: Project, min_role: Role) -> bool:
    role = role_in(user, project)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[min_role]


def require_role(user: UserLike, project: Project, min_role: Role) -> Role:
    """Raise NotFound for a non-member and Forbidden for a member below `min_role`."""
    role = role_in(user, project)
    if role is None:
        raise NotFound("This project does not exist or you are not a member of it.")
    if ROLE_RANK[role] < ROLE_RANK[min_role]:
        raise Forbidden(f"This needs the {min_role.label.lower()} role in this project.")
    return role


def can_create_projects(user: UserLike) -> bool:
    """Whether LOUPE_PROJECT_CREATORS ("staff", "superusers" or "everyone") lets `user` create one.

    An unknown value allows only superusers: a typo in the setting must not open creation to all.
    """
    if not user.is_authenticated:
        return False
    if getattr(user, "is_superuser", False):
        return True
    creators = settings.LOUPE_PROJECT_CREATORS.strip().lower()
    if creators == "everyone":
        return True
    return creators == "staff" and bool(getattr(user, "is_staff", False))


def require_project_creator(user: UserLike) -> None:
    """Raise Forbidden unless `user` may create projects (see `can_create_projects`)."""
    if not can_create_projects(user):
        raise Forbidden(
            "Creating projects is reserved to this installation's staff. Ask an administrator "
            "to create the project and add you to it."
        )


def visible_projects(user: UserLike) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    if getattr(user, "is_superuser", False):
        return Project.objects.all()
    return Project.objects.filter(memberships__user_id=user.pk)


def access_project(
    user: UserLike, project_id: int | str, *, min_role: Role = Role.ANNOTATOR
) -> Project:
    """The project if `user` holds at least `min_role` in it (404 for non-members, else 403)."""
    try:
        project = Project.objects.get(pk=int(project_id))
    except (Project.DoesNotExist, ValueError, TypeError):
        raise NotFound("This project does not exist or you are not a member of it.") from None
    project.current_role = require_role(user, project, min_role)  # type: ignore[attr-defined]
    return project


# --- Images ------------------------------------------------------------------------------------

# The role stored predictions need: the Predictions tab's role.
STORED_PREDICTION_ROLE = Role.REVIEWER


def is_stored_prediction(image: Image) -> bool:
    """An image the prediction API kept that is not training data yet."""
    return not image.is_training


def require_image_role(user: UserLike, image: Image, min_role: Role = Role.ANNOTATOR) -> Role:
    """Like `require_role` for the image's project, and reviewer-or-up for a stored prediction.

    The services that write labels call this, so a route that forgot the funnel still cannot
    relabel a stored prediction as an annotator.
    """
    role = require_role(user, image.project, min_role)
    if is_stored_prediction(image) and ROLE_RANK[role] < ROLE_RANK[STORED_PREDICTION_ROLE]:
        raise Forbidden("Stored predictions need the reviewer role in this project.")
    return role


def visible_images(user: UserLike, project: Project) -> ImageQuerySet:
    """The project's images `user` may open: training images, and stored predictions from the
    reviewer role up. Raises like `require_role` for a non-member."""
    role = require_role(user, project, Role.ANNOTATOR)
    images: ImageQuerySet = project.images.all()
    if ROLE_RANK[role] < ROLE_RANK[STORED_PREDICTION_ROLE]:
        images = images.training()
    return images


def access_image(
    user: UserLike,
    project: Project,
    image_id: int | str,
    *,
    images: ImageQuerySet | None = None,
) -> Image:
    """The project's image `image_id` if `user` may open it: 404 if there is none, 403 for a
    stored prediction below the reviewer role.

    `images` (a queryset of the project's images, e.g. with prefetches) is where to look; the
    image's `project` is set to `project`, whose role cache the services then reuse.
    """
    pk = parse_optional_id(image_id)
    queryset = images if images is not None else project.images.all()
    image = queryset.filter(project=project, pk=pk).first() if pk else None
    if image is None:
        raise NotFound("This image does not exist in this project.")
    image.project = project
    require_image_role(user, image)
    return image


def media_images(user: UserLike) -> ImageQuerySet:
    """Every image, of any project, whose file and thumbnail `user` may download (/media/)."""
    if not user.is_authenticated:
        return Image.objects.none()
    if getattr(user, "is_superuser", False):
        return Image.objects.all()
    memberships = Membership.objects.filter(user_id=user.pk)
    reviewing = [role for role, rank in ROLE_RANK.items() if rank >= STORED_PREDICTION_ROLE.rank]
    return Image.objects.filter(
        Q(project_id__in=memberships.values("project_id"), is_training=True)
        | Q(project_id__in=memberships.filter(role__in=reviewing).values("project_id"))
    )
