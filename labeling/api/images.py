"""REST API for a project's images: list and upload, one image, its tags, bulk actions.

Views look the project up through `access_project`, parse the body with a nested serializer
(shape only) and call one service: ingest, tagging or images.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_image, access_project
from labeling.api.common import errors
from labeling.api.upload import IngestReportSerializer, UploadInputSerializer, upload_images
from labeling.models import Image, ImageQuerySet, ImageTag, Project, Role
from labeling.serializers import ImageOutputSerializer
from labeling.services.images import ImageFilter, browse_images, delete_images
from labeling.services.projects import get_tag, get_tags
from labeling.services.tagging import (
    add_tags_to_images,
    remove_tags_from_images,
    set_image_tags,
)
from project.hosts import absolute_url
from project.ids import IdField, id_list_field

# A page of images is at most this many; 50 is the default (the upload batch size too).
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
# Bulk actions name their images; bounded so one request stays one short transaction.
MAX_BULK_IMAGES = 5000


def images_for_listing(project: Project) -> ImageQuerySet:
    """The project's images with everything ImageOutputSerializer reads, in 2 extra queries
    per page whatever its length (tags with their names, regions)."""
    return project.images.prefetch_related(
        Prefetch("image_tags", queryset=ImageTag.objects.select_related("tag")), "regions"
    )


def get_image(request: Request, project: Project, image_id: int | str) -> Image:
    # Through the funnel: 404 for an id no image has, 403 for a stored prediction below reviewer.
    return access_image(request.user, project, image_id, images=images_for_listing(project))


def _image_response(request: Request, project: Project, image_id: int) -> Response:
    image = get_image(request, project, image_id)
    return Response(ImageOutputSerializer(image, context={"request": request}).data)


class ImageListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class FilterSerializer(serializers.Serializer):
        tagged = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="true: tagged images only; false: untagged.",
        )
        tag = IdField(required=False, help_text="Only images with this tag.")
        after = IdField(
            required=False,
            help_text="Cursor: the page after this image id "
            "(the `next_cursor` of the previous page).",
        )
        page_size = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
        )

        class Meta:
            ref_name = "ImageFilter"

    class PageSerializer(serializers.Serializer):
        count = serializers.IntegerField(help_text="Images matching the filters.")
        next_cursor = serializers.IntegerField(
            allow_null=True, help_text="Pass as `after` for the next page."
        )
        next = serializers.CharField(allow_null=True, help_text="URL of the next page.")
        results = ImageOutputSerializer(many=True)

        class Meta:
            ref_name = "ImagePage"

    @extend_schema(
        operation_id="images_list",
        parameters=[FilterSerializer],
        responses={200: PageSerializer, **errors(400)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params: dict[str, Any] = query.validated_data
        tag_id = get_tag(project, params["tag"]).pk if "tag" in params else None
        status_name = {None: "all", True: "tagged", False: "untagged"}[params["tagged"]]
        images = ImageFilter(status=status_name, tag_id=tag_id).apply(images_for_listing(project))
        page = browse_images(images, after=params.get("after"), size=params["page_size"])
        next_url = None
        if page.older_cursor is not None:
            query_params = request.query_params.copy()
            query_params["after"] = str(page.older_cursor)
            next_url = absolute_url(request, f"{request.path}?{query_params.urlencode()}")
        body = {
            "count": images.count(),
            "next_cursor": page.older_cursor,
            "next": next_url,
            "results": ImageOutputSerializer(
                page.images, many=True, context={"request": request}
            ).data,
        }
        return Response(body)

    @extend_schema(
        operation_id="images_upload",
        request={"multipart/form-data": UploadInputSerializer},
        responses={
            201: IngestReportSerializer,
            200: IngestReportSerializer,
            **errors(400, 403, 422),
        },
        description="Upload many images at once (multipart field `files`, optional "
        "`tag_ids`). Each file is checked by content and reported on its "
        "own: 201 if any landed, 200 if none did, 400 with no files.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        return upload_images(request, project_id)


class ImageDetailApi(APIView):
    @extend_schema(
        operation_id="images_retrieve", responses={200: ImageOutputSerializer, **errors()}
    )
    def get(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id)
        return _image_response(request, project, image_id)

    @extend_schema(operation_id="images_destroy", responses={204: None, **errors(403)})
    def delete(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        image = get_image(request, project, image_id)
        delete_images(project=project, image_ids=[image.pk], by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImageTagsApi(APIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class ReplaceSerializer(serializers.Serializer):
        tag_ids = id_list_field(allow_empty=True)
        version = serializers.IntegerField(
            allow_null=True,
            help_text="The image version you saw; a newer one answers 409. "
            "null replaces whatever is there.",
        )

        class Meta:
            ref_name = "ImageTagsReplace"

    class OneTagSerializer(serializers.Serializer):
        tag_id = IdField()

        class Meta:
            ref_name = "ImageTagsOne"

    @extend_schema(
        operation_id="image_tags_replace",
        request=ReplaceSerializer,
        responses={200: ImageOutputSerializer, **errors(400, 409, 422)},
    )
    def put(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
        image = get_image(request, project, image_id)
        data = self.ReplaceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        set_image_tags(
            image=image,
            tags=get_tags(project, data.validated_data["tag_ids"]),
            by=request.user,
            version=data.validated_data["version"],
        )
        return _image_response(request, project, image.pk)

    @extend_schema(
        operation_id="image_tags_add",
        request=OneTagSerializer,
        responses={200: ImageOutputSerializer, **errors(400, 422)},
        description="Add one tag, by the project's rules: in multiclass (and for "
        "the Negative tag) it replaces the image's tags.",
    )
    def post(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
        image = get_image(request, project, image_id)
        data = self.OneTagSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tag = get_tag(project, data.validated_data["tag_id"])
        add_tags_to_images(project=project, image_ids=[image.pk], tags=[tag], by=request.user)
        return _image_response(request, project, image.pk)

    @extend_schema(
        operation_id="image_tags_remove",
        parameters=[
            OpenApiParameter(
                "tag_id",
                OpenApiTypes.INT,
                required=True,
                description='The tag to remove. A JSON body {"tag_id": n} works too.',
            )
        ],
        responses={200: ImageOutputSerializer, **errors(400)},
    )
    def delete(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
        image = get_image(request, project, image_id)
        source = request.data if "tag_id" in request.data else request.query_params
        data = self.OneTagSerializer(data={"tag_id": source.get("tag_id")})
        data.is_valid(raise_exception=True)
        tag = get_tag(project, data.validated_data["tag_id"])
        remove_tags_from_images(project=project, image_ids=[image.pk], tags=[tag], by=request.user)
        return _image_response(request, project, image.pk)


class ImageBulkApi(APIView):
    class InputSerializer(serializers.Serializer):
        action = serializers.ChoiceField(choices=["tag", "untag", "delete"])
        image_ids = id_list_field(allow_empty=False, max_length=MAX_BULK_IMAGES)
        tag_ids = id_list_field(
            required=False,
            default=list,
            help_text="tag: the tags to give; untag: the tags to remove (none: all).",
        )

        class Meta:
            ref_name = "ImageBulk"

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs["action"] == "tag" and not attrs["tag_ids"]:
                raise serializers.ValidationError({"tag_ids": "Name at least one tag."})
            return attrs

    class OutputSerializer(serializers.Serializer):
        action = serializers.CharField()
        count = serializers.IntegerField(help_text="Images of this project changed.")

        class Meta:
            ref_name = "ImageBulkResult"

    @extend_schema(
        operation_id="images_bulk",
        request=InputSerializer,
        responses={200: OutputSerializer, **errors(400, 403, 422)},
        description="Tag, untag or delete many images at once (delete: reviewer+). "
        "Ids of images not in the project are ignored.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        action, image_ids = data.validated_data["action"], data.validated_data["image_ids"]
        if action == "delete":
            count = delete_images(project=project, image_ids=image_ids, by=request.user)
        else:
            tags = get_tags(project, data.validated_data["tag_ids"])
            service = add_tags_to_images if action == "tag" else remove_tags_from_images
            count = service(project=project, image_ids=image_ids, tags=tags, by=request.user)
        return Response(self.OutputSerializer({"action": action, "count": count}).data)
