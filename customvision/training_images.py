"""Training API: images (create in batches, list, count, delete); their tags and regions are
customvision/training_labels.py.

Listing reads the project's training images through the access funnel (`visible_images`);
every write is one of labeling's services (ingest, bulk tagging, boxes) as the key's user.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from customvision.ids import Kind, parse_uuid_list, to_uuid
from customvision.training_media import image_uri
from customvision.training_projects import iteration_for, project_for
from customvision.training_shapes import UriOf, image_json
from customvision.training_uploads import (
    MAX_TAGS_PER_IMAGE,
    Entry,
    batch_limit,
    check_batch_size,
    create_images,
    decode_base64,
    entry_labels,
    refuse_metadata,
    summary,
    with_labels,
)
from customvision.training_wire import (
    NO_CONTENT,
    body_object,
    cv_error,
    image_parts,
    query_bool,
    query_choice,
    query_int,
    query_text,
)
from labeling.access import visible_images
from labeling.models import ImageQuerySet, Project, Role, Tag
from labeling.services.images import delete_images as delete_image_rows
from predictions.models import Prediction
from predictions.services.fetch import fetch_image
from predictions.services.triage import promote_prediction
from project.errors import LoupeError
from training.models import IterationImage

User = AbstractBaseUser
MAX_TAKE = 256
MAX_IDS = 256
DELETE_SLICE = 500


def uris(request: HttpRequest) -> UriOf:
    return lambda image_id, variant: image_uri(request, image_id, variant)


def images_of(user: User, project: Project) -> ImageQuerySet:
    return visible_images(user, project).training()


def tag_ids_query(request: HttpRequest, max_count: int = MAX_TAGS_PER_IMAGE) -> list[int]:
    return parse_uuid_list(
        query_text(request, "tagIds"), Kind.TAG, field="tagIds", max_count=max_count
    )


def one_id(value: object, kind: Kind, field: str) -> int:
    return parse_uuid_list([value], kind, field=field, max_count=1)[0]


# --- Creating -------------------------------------------------------------------------------------


def create_images_from_files(request: HttpRequest, user: User, project_id: int) -> Any:
    """ImageFileCreateBatch: `{"images": [{"name", "contents" (base64), "tagIds", "regions"}],
    "tagIds", "metadata"}`."""
    project = project_for(user, project_id)
    body = body_object(request, max_bytes=batch_limit())
    raw_images = body.get("images") or []
    if not isinstance(raw_images, list):
        raise cv_error("BadRequestImageBatch", "“images” must be a list.")
    check_batch_size(len(raw_images))
    refuse_metadata(body.get("metadata"))
    batch_tags = parse_uuid_list(
        body.get("tagIds"), Kind.TAG, field="tagIds", max_count=MAX_TAGS_PER_IMAGE
    )
    entries = []
    for index, raw in enumerate(raw_images):
        if not isinstance(raw, dict):
            raise cv_error("BadRequestImageBatch", f"“images[{index}]” must be a JSON object.")
        tag_ids, boxes = entry_labels(raw, index, batch_tags)
        data = decode_base64(raw.get("contents"))
        entries.append(
            Entry(
                source=str(raw.get("name") or "")[:255],
                data=data,
                tag_ids=tag_ids,
                boxes=boxes,
                # Not base64: the file never reaches ingest.
                status="" if data is not None else "ErrorImageFormat",
            )
        )
    return create_images(project=project, entries=entries, by=user, uri_of=uris(request))


def create_images_from_data(request: HttpRequest, user: User, project_id: int) -> Any:
    """Multipart (each part an image, `imageData`; a filename is optional) or a raw body,
    tagged with the `tagIds` query."""
    project = project_for(user, project_id)
    tag_ids = tag_ids_query(request)
    parts = image_parts(request, max_bytes=batch_limit())
    check_batch_size(len(parts))
    entries = [Entry(source=part.name, data=part.data, tag_ids=list(tag_ids)) for part in parts]
    return create_images(project=project, entries=entries, by=user, uri_of=uris(request))


def create_images_from_urls(request: HttpRequest, user: User, project_id: int) -> Any:
    """ImageUrlCreateBatch: each URL fetched by the server under predictions.services.fetch's
    rules (public addresses only, size and time capped); one that fails is `ErrorSource`."""
    project = project_for(user, project_id)
    body = body_object(request)
    raw_images = body.get("images") or []
    if not isinstance(raw_images, list):
        raise cv_error("BadRequestImageBatch", "“images” must be a list.")
    check_batch_size(len(raw_images))
    refuse_metadata(body.get("metadata"))
    batch_tags = parse_uuid_list(
        body.get("tagIds"), Kind.TAG, field="tagIds", max_count=MAX_TAGS_PER_IMAGE
    )
    parsed = []
    for index, raw in enumerate(raw_images):
        if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
            raise cv_error("BadRequestImageUrl", f"“images[{index}].url” must be a string.")
        parsed.append((raw["url"], *entry_labels(raw, index, batch_tags)))
    # Labels are checked (by create_images) before anything is stored; the fetches come first
    # only because a box is checked against the fetched image's size.
    entries = []
    for url, tag_ids, boxes in parsed:
        entry = Entry(source=url, tag_ids=tag_ids, boxes=boxes)
        try:
            fetched = fetch_image(url, max_bytes=settings.LOUPE_MAX_IMAGE_BYTES)
        except LoupeError as err:
            entry.status = "ErrorImageSize" if "Size" in err.code else "ErrorSource"
        else:
            entry.data, entry.name = fetched.data, fetched.name
        entries.append(entry)
    return create_images(project=project, entries=entries, by=user, uri_of=uris(request))


def create_images_from_predictions(request: HttpRequest, user: User, project_id: int) -> Any:
    """ImageIdCreateBatch: stored predictions (by their id) moved into the training data with
    the given tags or regions, through the Predictions tab's own "Save and close"
    (`promote_prediction`, reviewers and admins). An image whose content is already training
    data is `OKDuplicate` with that image; an unknown id is `ErrorSource`; labels the project
    refuses are `ErrorInvalidTag` (the prediction stays open)."""
    project = project_for(user, project_id, Role.REVIEWER)
    body = body_object(request)
    raw_images = body.get("images") or []
    if not isinstance(raw_images, list) or not all(isinstance(r, dict) for r in raw_images):
        raise cv_error("BadRequestImageBatch", "“images” must be a list of JSON objects.")
    check_batch_size(len(raw_images))
    refuse_metadata(body.get("metadata"))
    batch_tags = parse_uuid_list(
        body.get("tagIds"), Kind.TAG, field="tagIds", max_count=MAX_TAGS_PER_IMAGE
    )
    tags = {tag.pk: tag for tag in project.tags.all()}
    entries = []
    for index, raw in enumerate(raw_images):
        prediction_id = one_id(raw.get("id"), Kind.PREDICTION, f"images[{index}].id")
        tag_ids, boxes = entry_labels(raw, index, batch_tags)
        entry = Entry(source=to_uuid(Kind.PREDICTION, prediction_id))
        prediction = Prediction.objects.filter(project=project, pk=prediction_id).first()
        if prediction is None:
            entry.status = "ErrorSource"
        elif any(t not in tags for t in [*tag_ids, *(box[0] for box in boxes)]):
            entry.status = "ErrorInvalidTag"
        else:
            _promote(project, prediction.image_id, entry, tags, tag_ids, boxes, user)
        entries.append(entry)
    return summary(project, entries, uris(request))


def _promote(
    project: Project,
    image_id: int,
    entry: Entry,
    tags: dict[int, Tag],
    tag_ids: list[int],
    boxes: list[Any],
    user: User,
) -> None:
    try:
        promote_prediction(
            project=project,
            image_id=image_id,
            by=user,
            tags=[tags[t] for t in tag_ids] if tag_ids else None,
            regions=[(tags[t], *box) for t, *box in boxes] if boxes else None,
        )
    except LoupeError as err:
        if err.code in ("not_found", "forbidden"):
            raise
        duplicate = err.details.get("duplicate_of")
        entry.status, entry.image_id = (
            ("OKDuplicate", duplicate) if duplicate else ("ErrorInvalidTag", None)
        )
    else:
        entry.status, entry.image_id = "OK", image_id


# --- Listing and counting -------------------------------------------------------------------------


def _filtered(request: HttpRequest, user: User, project: Project, status: str) -> ImageQuerySet:
    """Training images by tagging status, tags (any of them) and iteration snapshot."""
    if query_text(request, "$filter"):
        raise cv_error(
            "BadRequestNotSupported", "Metadata filters are not supported by this server."
        )
    images = images_of(user, project)
    if status == "Tagged":
        images = images.tagged()
    elif status == "Untagged":
        images = images.untagged()
    tag_ids = tag_ids_query(request)
    if tag_ids:
        if status == "Untagged":
            raise cv_error("BadRequest", "Untagged images cannot be filtered by tags.")
        matching = images.for_tag(tag_ids[0])
        for tag_id in tag_ids[1:]:
            matching = matching | images.for_tag(tag_id)
        images = matching
    iteration_id = query_text(request, "iterationId")
    if iteration_id:
        pk = parse_uuid_list(iteration_id, Kind.ITERATION, field="iterationId", max_count=1)[0]
        iteration = iteration_for(project, pk)
        images = images.filter(
            pk__in=IterationImage.objects.filter(iteration=iteration).values("image_id")
        )
    return images


def _page(request: HttpRequest, images: ImageQuerySet) -> list[Any]:
    order = query_choice(request, "orderBy", ("Newest", "Oldest"), "Newest")
    take = query_int(request, "take", 50, low=0, high=MAX_TAKE)
    skip = query_int(request, "skip", 0, low=0, high=10**9)
    ordered = images.order_by("-pk" if order == "Newest" else "pk")
    return list(with_labels(ordered)[skip : skip + take])


def _status(request: HttpRequest) -> str:
    return query_choice(request, "taggingStatus", ("All", "Tagged", "Untagged"), "All")


def get_images(request: HttpRequest, user: User, project_id: int) -> list[dict[str, Any]]:
    project = project_for(user, project_id)
    rows = _page(request, _filtered(request, user, project, _status(request)))
    return [image_json(image, uris(request)) for image in rows]


def get_tagged_images(request: HttpRequest, user: User, project_id: int) -> list[dict[str, Any]]:
    project = project_for(user, project_id)
    rows = _page(request, _filtered(request, user, project, "Tagged"))
    return [image_json(image, uris(request)) for image in rows]


def get_untagged_images(request: HttpRequest, user: User, project_id: int) -> list[dict[str, Any]]:
    project = project_for(user, project_id)
    rows = _page(request, _filtered(request, user, project, "Untagged"))
    return [image_json(image, uris(request)) for image in rows]


def get_image_count(request: HttpRequest, user: User, project_id: int) -> int:
    project = project_for(user, project_id)
    return _filtered(request, user, project, _status(request)).count()


def get_tagged_image_count(request: HttpRequest, user: User, project_id: int) -> int:
    project = project_for(user, project_id)
    return _filtered(request, user, project, "Tagged").count()


def get_untagged_image_count(request: HttpRequest, user: User, project_id: int) -> int:
    project = project_for(user, project_id)
    return _filtered(request, user, project, "Untagged").count()


def get_images_by_ids(request: HttpRequest, user: User, project_id: int) -> list[dict[str, Any]]:
    """The listed images that exist, in the order asked; unknown ids are left out."""
    project = project_for(user, project_id)
    ids = parse_uuid_list(
        query_text(request, "imageIds"), Kind.IMAGE, field="imageIds", max_count=MAX_IDS
    )
    found = {image.pk: image for image in with_labels(images_of(user, project).filter(pk__in=ids))}
    return [image_json(found[pk], uris(request)) for pk in dict.fromkeys(ids) if pk in found]


def delete_images(request: HttpRequest, user: User, project_id: int) -> object:
    """`imageIds` (at most 256) or `allImages=true`. Iterations keep their snapshot's record of
    a deleted image (as Custom Vision's `allIterations=false`), so `allIterations` changes
    nothing here."""
    project = project_for(user, project_id)
    ids = parse_uuid_list(
        query_text(request, "imageIds"), Kind.IMAGE, field="imageIds", max_count=MAX_IDS
    )
    if query_bool(request, "allImages"):
        ids = list(images_of(user, project).values_list("pk", flat=True))
    elif not ids:
        raise cv_error(
            "BadRequestRequiredParamIsNull", "Name the images to delete (imageIds) or allImages."
        )
    # In slices: one IN (...) over a whole project's ids passes SQLite's variable limit.
    for start in range(0, len(ids), DELETE_SLICE):
        delete_image_rows(project=project, image_ids=ids[start : start + DELETE_SLICE], by=user)
    return NO_CONTENT
