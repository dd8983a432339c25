"""Training API: domains, projects and tags (Custom Vision's `/domains`, `/projects`, `/tags`).

Each handler parses the wire, calls labeling's services as the user the Training-Key acts as,
and shapes the answer; the services check the roles and rules, as they do for the browser.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from customvision.ids import Kind, to_uuid
from customvision.training_shapes import (
    DEFAULT_CLASSIFICATION_DOMAIN,
    DOMAINS,
    TAG_TYPES,
    classification_type,
    domain_json,
    find_domain,
    project_json,
    tag_json,
)
from customvision.training_wire import (
    NO_CONTENT,
    body_object,
    cv_error,
    optional_id,
    query_choice,
    query_required,
    query_text,
)
from labeling.access import access_project, require_project_creator, visible_projects
from labeling.models import Project, Role, Tag
from labeling.services import projects as project_services
from project.errors import LoupeError, NotFound, ValidationFailed
from training.models import Iteration
from training.services.model_export import SUPPORTED_PLATFORMS

User = AbstractBaseUser


def project_for(user: User, project_id: int, min_role: Role = Role.ANNOTATOR) -> Project:
    """The project through the access funnel; a non-member's 404 speaks Custom Vision."""
    try:
        return access_project(user, project_id, min_role=min_role)
    except NotFound as err:
        raise cv_error("NotFoundProject", err.message) from None


# --- Domains ------------------------------------------------------------------------------------


def get_domains(request: HttpRequest, user: User) -> list[dict[str, Any]]:
    return [domain_json(domain) for domain in DOMAINS]


def get_domain(request: HttpRequest, user: User, domain_id: str) -> dict[str, Any]:
    return domain_json(find_domain(domain_id))


# --- Projects -----------------------------------------------------------------------------------


def get_projects(request: HttpRequest, user: User) -> list[dict[str, Any]]:
    return [project_json(project) for project in visible_projects(user).order_by("-created", "-id")]


def _kind_for(domain_type_detection: bool, classification: str | None) -> str:
    if domain_type_detection:
        return Project.Kind.DETECTION
    if classification in (None, "", "Multiclass"):
        return Project.Kind.MULTICLASS
    return Project.Kind.MULTILABEL


def _check_export_platforms(platforms: str) -> None:
    """Every iteration exports to every platform this server has, so asking for those is a
    no-op; asking for another (CoreML, TensorFlow...) is refused rather than promised."""
    supported = {name.lower() for name in SUPPORTED_PLATFORMS}
    unknown = [p.strip() for p in platforms.split(",") if p.strip().lower() not in supported]
    if platforms and unknown:
        raise cv_error(
            "BadRequestProjectUnsupportedExportPlatform",
            f"This server exports {' and '.join(SUPPORTED_PLATFORMS)} only, not "
            f"{', '.join(u[:40] for u in unknown if u) or 'an empty name'}.",
        )


def create_project(request: HttpRequest, user: User) -> dict[str, Any]:
    name = query_required(request, "name")
    domain_id = query_text(request, "domainId")
    domain = find_domain(domain_id) if domain_id else DEFAULT_CLASSIFICATION_DOMAIN
    classification = query_choice(
        request, "classificationType", ("Multiclass", "Multilabel"), "Multiclass"
    )
    # CreateProjectOptions (export container, notification queue) name Azure resources this
    # server cannot write to: the body is read so a malformed one is refused, and its options
    # are refused by name rather than ignored.
    options = body_object(request, required=False)
    given = sorted(key for key, value in options.items() if value)
    if given:
        raise cv_error(
            "BadRequestNotSupported",
            f"{', '.join(given)} name Azure resources; this server does not support them.",
        )
    _check_export_platforms(query_text(request, "targetExportPlatforms"))
    require_project_creator(user)
    try:
        project = project_services.create_project(
            name=name,
            kind=_kind_for(domain.is_detection, classification),
            domain=domain.loupe_domain,
            description=query_text(request, "description"),
            by=user,
        )
    except ValidationFailed as err:
        raise cv_error("BadRequestProjectName", err.message) from None
    return project_json(project)


def get_project(request: HttpRequest, user: User, project_id: int) -> dict[str, Any]:
    return project_json(project_for(user, project_id))


def update_project(request: HttpRequest, user: User, project_id: int) -> dict[str, Any]:
    """Name, description and domain (within the project's type); the type is fixed."""
    project = project_for(user, project_id)
    body = body_object(request)
    settings = body.get("settings") or {}
    if not isinstance(settings, dict):
        raise cv_error("BadRequest", "“settings” must be a JSON object.")
    domain = None
    if settings.get("domainId"):
        domain = find_domain(str(settings["domainId"]))
        if domain.is_detection != project.is_detection:
            raise cv_error(
                "BadRequestProjectUnsupportedDomainTypeChange",
                "A project cannot move between classification and object detection: its "
                "labels depend on it. Create a new project instead.",
            )
    wanted = settings.get("classificationType")
    if wanted and wanted != classification_type(project):
        raise cv_error(
            "BadRequestProjectUnknownClassification",
            f"This project is {classification_type(project) or 'object detection'}; a project's "
            "classification type is fixed once created on this server.",
        )
    name, description = body.get("name"), body.get("description")
    for field, value in (("name", name), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise cv_error("BadRequest", f"“{field}” must be a string.")
    try:
        project = project_services.update_project(
            project=project,
            by=user,
            name=name,
            description=description,
            domain=domain.loupe_domain if domain is not None else None,
        )
    except ValidationFailed as err:
        raise cv_error("BadRequestProjectName", err.message) from None
    return project_json(project)


def delete_project(request: HttpRequest, user: User, project_id: int) -> object:
    project = project_for(user, project_id)
    project_services.delete_project(project=project, by=user)
    return NO_CONTENT


# --- Tags ---------------------------------------------------------------------------------------


def _tag_type(value: str) -> str:
    if not value or value == "Regular":
        return Tag.Kind.REGULAR
    if value == "Negative":
        return Tag.Kind.NEGATIVE
    raise cv_error(
        "BadRequestTagType",
        f"Tag type “{value[:40]}” is not supported here; use Regular or Negative.",
    )


def _tag_error(err: LoupeError) -> LoupeError:
    """create_tag's and update_tag's refusals under Custom Vision's codes. The services raise
    ValidationFailed for all of them, a subclass per case with its own code (tests pin them)."""
    if isinstance(err, project_services.TagNameTaken):
        return cv_error("BadRequestTagNameNotUnique", err.message)
    if isinstance(err, project_services.NegativeTagExists):
        return cv_error("BadRequestMultipleNegativeTag", err.message)
    if isinstance(err, ValidationFailed):
        return cv_error("BadRequestTagName", err.message)
    return err


def _tag_rows(project: Project, iteration_id: int | None) -> list[dict[str, Any]]:
    """The project's tags with their image counts, or the tags an iteration trained on."""
    if iteration_id is None:
        return [
            tag_json(tag.pk, tag.name, tag.description, tag.kind, tag.image_count)
            for tag in project_services.tags_with_image_counts(project)
        ]
    iteration = project.iterations.filter(pk=iteration_id).first()
    if iteration is None:
        raise cv_error("NotFoundIteration", "This iteration does not exist in this project.")
    return [
        tag_json(
            row.tag_id,
            row.tag.name if row.tag else row.name,
            row.tag.description if row.tag else "",
            Tag.Kind.REGULAR,
            row.image_count,
        )
        for row in iteration.tags.select_related("tag").order_by("index")
    ]


def _iteration_query(request: HttpRequest) -> int | None:
    return optional_id(query_text(request, "iterationId"), Kind.ITERATION, field="iterationId")


def get_tags(request: HttpRequest, user: User, project_id: int) -> list[dict[str, Any]]:
    project = project_for(user, project_id)
    return _tag_rows(project, _iteration_query(request))


def create_tag(request: HttpRequest, user: User, project_id: int) -> dict[str, Any]:
    project = project_for(user, project_id)
    name = query_required(request, "name")
    kind = _tag_type(query_text(request, "type"))
    try:
        tag = project_services.create_tag(
            project=project,
            name=name,
            by=user,
            kind=kind,
            description=query_text(request, "description"),
        )
    except ValidationFailed as err:
        raise _tag_error(err) from None
    return tag_json(tag.pk, tag.name, tag.description, tag.kind, 0)


def _tag(project: Project, tag_id: int) -> Tag:
    try:
        return project_services.get_tag(project, tag_id)
    except NotFound as err:
        raise cv_error("NotFoundTag", err.message) from None


def get_tag(request: HttpRequest, user: User, project_id: int, tag_id: int) -> dict[str, Any]:
    project = project_for(user, project_id)
    tag = _tag(project, tag_id)
    for row in _tag_rows(project, _iteration_query(request)):
        if row["id"] == to_uuid(Kind.TAG, tag.pk):
            return row
    raise cv_error("NotFoundTag", "This iteration did not train on this tag.")


def update_tag(request: HttpRequest, user: User, project_id: int, tag_id: int) -> dict[str, Any]:
    project = project_for(user, project_id)
    tag = _tag(project, tag_id)
    body = body_object(request)
    wanted = body.get("type")
    if wanted and _tag_type(str(wanted)) != tag.kind:
        raise cv_error(
            "BadRequestTagType",
            f"“{tag.name}” is a {TAG_TYPES[tag.kind]} tag; a tag's type cannot change here. "
            "Create a tag of the other type instead.",
        )
    name, description = body.get("name"), body.get("description")
    for field, value in (("name", name), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise cv_error("BadRequest", f"“{field}” must be a string.")
    try:
        tag = project_services.update_tag(tag=tag, by=user, name=name, description=description)
    except ValidationFailed as err:
        raise _tag_error(err) from None
    counted = project_services.tags_with_image_counts(project).get(pk=tag.pk)
    return tag_json(tag.pk, tag.name, tag.description, tag.kind, counted.image_count)


def delete_tag(request: HttpRequest, user: User, project_id: int, tag_id: int) -> object:
    project = project_for(user, project_id)
    project_services.delete_tag(tag=_tag(project, tag_id), by=user)
    return NO_CONTENT


def iteration_for(project: Project, iteration_id: int) -> Iteration:
    iteration = project.iterations.filter(pk=iteration_id).first()
    if iteration is None:
        raise cv_error("NotFoundIteration", "This iteration does not exist in this project.")
    return iteration


def project_and_iteration(
    user: User, project_id: int, iteration_id: int
) -> tuple[Project, Iteration]:
    """The project through the access funnel and its iteration; each 404 speaks Custom Vision."""
    project = project_for(user, project_id)
    return project, iteration_for(project, iteration_id)
