"""REST API of detection boxes (regions): list an image's, create in batches, update, delete.

Boxes use Custom Vision's convention: left, top, width and height as fractions (0..1) of the
image's width and height, top-left origin. Every write goes through labeling.services.regions,
the box editor's rules (detection projects only, regular tags, inside the image, at least 1 px,
stored predictions for reviewers and up); unlike the editor, which saves an image's boxes as a
whole, these keep the other boxes and their ids.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_image, access_project
from labeling.api.common import errors
from labeling.models import Image, Project, Region, Role
from labeling.services.projects import get_tag
from labeling.services.regions import RegionSpec, add_regions, delete_region, update_region
from project.errors import LabelRuleError, LoupeError, NotFound, ValidationFailed
from project.ids import IdField, parse_optional_id

# One request stays one short run of transactions; Custom Vision takes 64 per call.
MAX_BATCH_REGIONS = 500


class BoxSerializer(serializers.Serializer):
    tag_id = IdField()
    # Shape only: the range rules (inside the image, sub-pixel overshoot clipped) are the
    # service's.
    left = serializers.FloatField()
    top = serializers.FloatField()
    width = serializers.FloatField()
    height = serializers.FloatField()

    class Meta:
        ref_name = "Box"


class ImageRegionSerializer(serializers.Serializer):
    """A box of an image, in fractions of the image, top-left origin."""

    id = serializers.IntegerField()
    image_id = serializers.IntegerField()
    tag_id = serializers.IntegerField()
    tag_name = serializers.CharField(source="tag.name")
    left = serializers.FloatField()
    top = serializers.FloatField()
    width = serializers.FloatField()
    height = serializers.FloatField()

    class Meta:
        ref_name = "ImageRegion"


def _require_detection(project: Project) -> None:
    if not project.is_detection:
        raise LabelRuleError("This project labels whole images with tags, not with boxes.")


def box_spec(project: Project, data: dict[str, Any]) -> RegionSpec:
    """(tag, left, top, width, height) of a checked BoxSerializer's data."""
    return (
        get_tag(project, data["tag_id"]),
        data["left"],
        data["top"],
        data["width"],
        data["height"],
    )


def get_region(request: Request, project: Project, region_id: int | str) -> Region:
    """The project's box `region_id`; its image through the funnel (stored predictions 403)."""
    _require_detection(project)
    pk = parse_optional_id(region_id)
    region = (
        Region.objects.filter(pk=pk, image__project=project).select_related("tag").first()
        if pk
        else None
    )
    if region is None:
        raise NotFound("This region does not exist in this project.")
    region.image = access_image(request.user, project, region.image_id)
    return region


class ImageRegionListApi(APIView):
    @extend_schema(
        operation_id="image_regions_list",
        responses={200: ImageRegionSerializer(many=True), **errors(403, 422)},
    )
    def get(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id)
        _require_detection(project)
        image = access_image(request.user, project, image_id)
        regions = image.regions.select_related("tag").order_by("id")
        return Response(ImageRegionSerializer(regions, many=True).data)


class RegionRejectedSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in `regions`, from 0.")
    code = serializers.CharField()
    message = serializers.CharField()

    class Meta:
        ref_name = "RegionRejected"


class RegionBatchReportSerializer(serializers.Serializer):
    created = ImageRegionSerializer(many=True)
    rejected = RegionRejectedSerializer(many=True)

    class Meta:
        ref_name = "RegionBatchReport"


class RegionCreateSerializer(BoxSerializer):
    image_id = IdField()

    class Meta:
        ref_name = "RegionCreate"


class RegionBatchSerializer(serializers.Serializer):
    """The body, as documented; the view checks each entry on its own (RegionBatchApi)."""

    regions = RegionCreateSerializer(many=True, max_length=MAX_BATCH_REGIONS)

    class Meta:
        ref_name = "RegionBatch"


class RegionBatchApi(APIView):
    class InputSerializer(serializers.Serializer):
        # Entries are objects here and checked one by one below: one malformed box is
        # reported at its index instead of refusing the batch.
        regions = serializers.ListField(
            child=serializers.DictField(), allow_empty=False, max_length=MAX_BATCH_REGIONS
        )

        class Meta:
            ref_name = "RegionBatchInput"

    @extend_schema(
        operation_id="regions_create",
        request=RegionBatchSerializer,
        responses={
            201: RegionBatchReportSerializer,
            200: RegionBatchReportSerializer,
            **errors(400, 422),
        },
        description="Add boxes to images of the project, up to 500 per call; the images keep "
        "their other boxes. Each box is checked on its own: a refused one is listed in "
        "`rejected` with its index and reason, and the others land (201 if any did, else 200).",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
        _require_detection(project)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        entries: list[tuple[Image, RegionSpec]] = []
        early: dict[int, LoupeError] = {}  # refused before the service: shape, image, tag
        images: dict[int, Image] = {}
        for index, raw in enumerate(data.validated_data["regions"]):
            entry = RegionCreateSerializer(data=raw)
            try:
                entry.is_valid(raise_exception=True)
                values = entry.validated_data
                image_id = values["image_id"]
                if image_id not in images:
                    images[image_id] = access_image(request.user, project, image_id)
                entries.append((images[image_id], box_spec(project, values)))
            except serializers.ValidationError as err:
                early[index] = ValidationFailed(_first_message(err.detail))
            except LoupeError as err:
                early[index] = err
        report = add_regions(entries=entries, by=request.user)
        rejected = [
            {"index": index, "code": err.code, "message": err.message}
            for index, err in early.items()
        ]
        # The service numbers the entries it was given; map them back to the request's indexes.
        given = [
            index for index in range(len(data.validated_data["regions"])) if index not in early
        ]
        rejected += [
            {"index": given[item.index], "code": item.code, "message": item.message}
            for item in report.rejected
        ]
        rejected.sort(key=lambda item: item["index"])
        body = {
            "created": ImageRegionSerializer(report.created, many=True).data,
            "rejected": RegionRejectedSerializer(rejected, many=True).data,
        }
        code = status.HTTP_201_CREATED if report.created else status.HTTP_200_OK
        return Response(body, status=code)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        field, messages = next(iter(detail.items()))
        return f"“{field}”: {_first_message(messages)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


class RegionDetailApi(APIView):
    class UpdateSerializer(BoxSerializer):
        version = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            help_text="The image version you saw; a newer one answers 409. Omitted: no check.",
        )

        class Meta:
            ref_name = "RegionUpdate"

    @extend_schema(
        operation_id="regions_retrieve", responses={200: ImageRegionSerializer, **errors(403)}
    )
    def get(self, request: Request, project_id: int, region_id: int) -> Response:
        project = access_project(request.user, project_id)
        return Response(ImageRegionSerializer(get_region(request, project, region_id)).data)

    @extend_schema(
        operation_id="regions_update",
        request=UpdateSerializer,
        responses={200: ImageRegionSerializer, **errors(400, 403, 409, 422)},
        description="Move, resize or retag one box.",
    )
    def put(self, request: Request, project_id: int, region_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
        region = get_region(request, project, region_id)
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        region = update_region(
            region=region,
            spec=box_spec(project, data.validated_data),
            by=request.user,
            version=data.validated_data["version"],
        )
        return Response(ImageRegionSerializer(region).data)

    @extend_schema(operation_id="regions_destroy", responses={204: None, **errors(403, 422)})
    def delete(self, request: Request, project_id: int, region_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
        delete_region(region=get_region(request, project, region_id), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
