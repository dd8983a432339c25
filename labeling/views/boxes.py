"""The box editor of detection projects: one page per image, saving boxes as JSON.

GET renders the editor (static/js/box-editor.js draws on it), or with `Accept: application/json`
the editor's data for one image, which the editor fetches to move to another image without a page
load; POST takes the image's complete
list of boxes and the version the editor started from (and optionally `no_objects`, the "No
objects" mark), and answers the stored boxes, the mark and the new version, or
`{"code", "message"}` with 409 (someone else saved first), 404 or 422.

The gallery's query string (`?filter=untagged`, `?tag=3`) rides along: Previous/Next walk the
images that filter shows, and "Back to the gallery" returns to it. The project's counts of
images with and without boxes come with every answer, saves included, so they stay live.

An image opened from another app's set (a performance page's mispredicted images,
`?mispredicted=<iteration id>&threshold=…&overlap=…`: labeling.image_sets) keeps that context
instead: Previous/Next walk the set, "back" returns to that page, and the editor data carries
the model's predicted boxes (static/js/box-prediction.js draws them beside the true ones).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from labeling.access import access_image, access_project
from labeling.forms import ImageFilterForm
from labeling.image_sets import ImagePrediction, ImageSet, image_set_for
from labeling.models import Image, Project, Role, Tag
from labeling.services.images import ImageFilter
from labeling.services.regions import RegionSpec, is_marked_no_objects, set_image_regions
from project.errors import LabelRuleError, LoupeError, NotFound, ValidationFailed

BOX_FIELDS = ("left", "top", "width", "height")


# never_cache: the page carries the image's version, so a cached copy (back button, prefetch)
# would make the next save a false conflict.
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def image_boxes(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
    if not project.is_detection:
        raise LabelRuleError("This project labels whole images with tags, not with boxes.")
    image = access_image(request.user, project, image_id)
    if request.method == "POST":
        return _save_boxes(request, project, image)
    all_tags = list(project.tags.all())
    tags = [tag for tag in all_tags if tag.kind == Tag.Kind.REGULAR]
    image_filter = ImageFilterForm(request.GET, tags=all_tags).image_filter()
    image_set = image_set_for(request.user, project, request.GET)
    query = urlencode(image_set.params if image_set else image_filter.as_query())
    gallery_url = reverse("labeling:project-detail", args=[project.pk])
    editor_data = {
        "name": str(image),
        "imageId": image.pk,  # "Where the model looked" follows the editor by it
        "version": image.version,
        "imageUrl": image_file_url(image),
        "width": image.width,
        "height": image.height,
        "tags": [{"id": t.pk, "name": t.name} for t in tags],
        "regions": _regions_payload(image),
        "noObjects": is_marked_no_objects(image),
        "saveUrl": request.path,
        "galleryUrl": f"{gallery_url}?{query}" if query else gallery_url,
        **_image_counts(project),
        **_neighbours(project, image, image_filter, query),
        "backUrl": f"{gallery_url}?{query}" if query else gallery_url,
        "backLabel": "Gallery",
    }
    if image_set is not None:
        editor_data.update(_set_data(project, image, image_set, query))
    # The editor moves between images without reloading the page: it asks for this as JSON.
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(editor_data)
    context = {"project": project, "image": image, "tags": tags, "editor_data": editor_data}
    return TemplateResponse(request, "labeling/box_editor.html", context)


def image_file_url(image: Image) -> str:
    """Where the browser loads the image's pixels from."""
    return image.file.url


def _save_boxes(request: HttpRequest, project: Project, image: Image) -> JsonResponse:
    try:
        version, regions, no_objects = _parse_boxes(request, project)
        image = set_image_regions(
            image=image, regions=regions, by=request.user, version=version, no_objects=no_objects
        )
    except LoupeError as err:
        return JsonResponse(err.as_dict(), status=err.http_status)
    return JsonResponse(
        {
            "version": image.version,
            "is_tagged": image.is_tagged,
            "regions": _regions_payload(image),
            "no_objects": is_marked_no_objects(image),
            **_image_counts(project),
        }
    )


def _parse_boxes(
    request: HttpRequest, project: Project
) -> tuple[int, list[RegionSpec], bool | None]:
    """Shape and type checks of the editor's JSON body; the rules are the service's."""
    try:
        body = json.loads(request.body)
        version = body["version"]
        raw = body["regions"]
        no_objects = body.get("no_objects")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValidationFailed(
            'The boxes could not be read: send JSON with "version" and "regions".'
        ) from None
    if not isinstance(version, int) or not isinstance(raw, list):
        raise ValidationFailed('"version" must be a number and "regions" a list.')
    if no_objects is not None and not isinstance(no_objects, bool):
        raise ValidationFailed('"no_objects" must be true or false.')
    tags = {tag.pk: tag for tag in project.tags.all()}
    regions: list[RegionSpec] = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(f), int | float) and not isinstance(item.get(f), bool)
            for f in BOX_FIELDS
        ):
            raise ValidationFailed(f"Box {number} needs numeric left, top, width and height.")
        tag = tags.get(item.get("tag_id"))  # type: ignore[arg-type]
        if tag is None:
            raise NotFound(f"Box {number} names a tag that is not in this project.")
        regions.append((tag, *(float(item[f]) for f in BOX_FIELDS)))
    return version, regions, no_objects


def _regions_payload(image: Image) -> list[dict[str, Any]]:
    return [
        {"tag_id": r.tag_id, "left": r.left, "top": r.top, "width": r.width, "height": r.height}
        for r in image.regions.all()
    ]


def _image_counts(project: Project) -> dict[str, int]:
    """The project's training images with boxes (or marked "No objects") and without."""
    counts = project.images.training().label_counts()
    return {"taggedCount": counts["tagged"], "untaggedLeft": counts["untagged"]}


def _set_data(project: Project, image: Image, image_set: ImageSet, query: str) -> dict[str, Any]:
    """In a set from another app: its way back, its neighbours and the model's boxes."""
    before, after = image_set.neighbours(image.pk)
    found = {
        row.pk: row
        for row in project.images.training()
        .filter(pk__in=[i for i in (before, after) if i])
        .only("pk", "file")
    }

    def url(image_id: int | None) -> str | None:
        if image_id not in found:
            return None
        return reverse("labeling:image-boxes", args=[project.pk, image_id]) + f"?{query}"

    position = image_set.position(image.pk) or "not in this set"
    return {
        "backUrl": image_set.back_url,
        "backLabel": image_set.back_label,
        "setLabel": f"{image_set.label} · {position}",
        "prevUrl": url(before),
        "nextUrl": url(after),
        "nextUntaggedUrl": None,  # N would leave the set
        "preload": sorted(image_file_url(found[i]) for i in (after,) if i in found),
        "prediction": _prediction_payload(image_set.prediction(image.pk)),
    }


def _prediction_payload(prediction: ImagePrediction | None) -> dict[str, Any] | None:
    if prediction is None:
        return None
    return {
        "source": prediction.source,
        "threshold": prediction.threshold,
        "summary": prediction.summary,
        "trueLabels": prediction.true_labels,
        "boxes": [
            {
                "name": box.name,
                "probability": box.probability,
                "left": box.left,
                "top": box.top,
                "width": box.width,
                "height": box.height,
            }
            for box in prediction.boxes
        ],
    }


def _neighbours(
    project: Project, image: Image, image_filter: ImageFilter, query: str
) -> dict[str, Any]:
    """Editor URLs of the previous, next (in the gallery's order, within its filter) and
    next-unlabeled image, and the pixels of the next two so the browser has them before the
    annotator presses the key."""
    shown = image_filter.apply(project.images.all())
    prev_image = shown.newer_than(image.pk).only("pk", "file").first()
    next_image = shown.older_than(image.pk).only("pk", "file").first()
    # N wraps around: after the oldest image it continues from the newest.
    untagged = project.images.training().untagged().exclude(pk=image.pk).only("pk", "file")
    next_untagged = untagged.older_than(image.pk).first() or untagged.order_by("-pk").first()

    def url(other: Image | None) -> str | None:
        if other is None:
            return None
        url = reverse("labeling:image-boxes", args=[project.pk, other.pk])
        return f"{url}?{query}" if query else url

    preload = {image_file_url(i) for i in (next_image, next_untagged) if i is not None}
    return {
        "prevUrl": url(prev_image),
        "nextUrl": url(next_image),
        "nextUntaggedUrl": url(next_untagged),
        "preload": sorted(preload),
    }
