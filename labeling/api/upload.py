"""REST upload: many image files in one multipart request, answered with a per-file report.

Mounted at POST /api/projects/<id>/images/upload/; POST /api/projects/<id>/images/ (the image
list's endpoint) answers the same by calling `upload_images`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.models import Role
from labeling.services.ingest import IngestReport, ingest_images
from project.ids import id_list_field


class UploadInputSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        help_text="The image files (repeat the field; 50 per request is a good batch).",
    )
    tag_ids = id_list_field(
        required=False,
        default=list,
        help_text="Tags given to every accepted image (repeat the "
        "field). Multiclass projects take one.",
    )

    class Meta:
        ref_name = "ImageUploadInput"


class UploadWarningSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="small")
    message = serializers.CharField()

    class Meta:
        ref_name = "UploadWarning"


class AcceptedFileSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the file in the request.")
    filename = serializers.CharField()
    image_id = serializers.IntegerField()
    width = serializers.IntegerField(help_text="Width in pixels after EXIF orientation.")
    height = serializers.IntegerField(help_text="Height in pixels after EXIF orientation.")
    warnings = UploadWarningSerializer(many=True)

    class Meta:
        ref_name = "UploadAcceptedFile"


class RejectedFileSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the file in the request.")
    filename = serializers.CharField()
    code = serializers.CharField(
        help_text="empty, too_large, duplicate, not_an_image, "
        "unsupported_format, too_many_pixels, corrupt"
    )
    message = serializers.CharField(help_text="A full sentence, safe to show.")
    image_id = serializers.IntegerField(
        allow_null=True, help_text="For duplicate: the image already stored."
    )

    class Meta:
        ref_name = "UploadRejectedFile"


class IngestReportSerializer(serializers.Serializer):
    accepted_count = serializers.IntegerField()
    rejected_count = serializers.IntegerField()
    accepted = AcceptedFileSerializer(many=True)
    rejected = RejectedFileSerializer(many=True)

    class Meta:
        ref_name = "UploadReport"


def report_body(report: IngestReport) -> dict[str, Any]:
    return IngestReportSerializer(report).data  # type: ignore[return-value]


def upload_images(request: Request, project_id: int) -> Response:
    """Ingest the request's files into the project: 201 if any landed, else 200; per-file report.

    Shared by UploadImagesApi and the image list's POST (labeling.api.images).
    """
    project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
    fields = request.data
    tag_ids = fields.getlist("tag_ids") if hasattr(fields, "getlist") else fields.get("tag_ids")
    data = UploadInputSerializer(
        data={"files": request.FILES.getlist("files"), "tag_ids": tag_ids or []}
    )
    data.is_valid(raise_exception=True)
    report = ingest_images(
        project=project,
        files=data.validated_data["files"],
        by=request.user,
        tag_ids=data.validated_data["tag_ids"],
    )
    return Response(
        report_body(report),
        status=status.HTTP_201_CREATED if report.accepted else status.HTTP_200_OK,
    )


class UploadImagesApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="images_upload_batch",
        request={"multipart/form-data": UploadInputSerializer},
        responses={
            201: IngestReportSerializer,
            200: IngestReportSerializer,
            **errors(400, 403, 422),
        },
        description="Upload many images at once. Each file is checked by content "
        "and reported on its own: bad files never stop the good ones.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        return upload_images(request, project_id)
