"""REST API for dataset export jobs: start one, poll it, download its zip.

POST /api/projects/<id>/exports/ answers 202 with the queued job; GET .../exports/<job>/ its
state and progress (with `download_url` once done); GET .../exports/<job>/download/ the zip.
Reviewers and admins, as on the datasets page.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.formats import FORMATS
from labeling.models import Project, Role
from labeling.services.datasets import ExportSelection
from labeling.services.export_jobs import (
    DONE,
    ExportJob,
    get_export,
    open_export,
    recent_exports,
    start_export,
)
from labeling.services.saved_filters import get_saved_filter
from project.ids import IdField, id_list_field
from project.streaming import stream_file


class ExportJobSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The job's id (a UUID).")
    format = serializers.CharField()
    tag_ids = serializers.ListField(child=serializers.IntegerField())
    filter = serializers.CharField(help_text="The gallery filter the images were chosen by.")
    saved_filter = serializers.CharField(
        allow_null=True,
        help_text="The name of the saved filter the images were chosen by (as it was when the "
        "export started; `tag_ids` and `filter` hold what it selected then), or null.",
    )
    state = serializers.ChoiceField(choices=["queued", "running", "done", "failed"])
    progress = serializers.FloatField(help_text="0 to 1.")
    message = serializers.CharField(help_text="A full sentence, safe to show.")
    images = serializers.IntegerField(help_text="Images in the archive, once done.")
    size_bytes = serializers.IntegerField()
    file_name = serializers.CharField()
    created = serializers.FloatField(help_text="Epoch seconds.")
    finished = serializers.FloatField(allow_null=True)
    problem_code = serializers.CharField(allow_null=True, help_text="Why it failed, if it did.")
    download_url = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "DatasetExportJob"


def _body(project: Project, job: ExportJob) -> dict[str, Any]:
    url = (
        reverse("api-export-download", args=[project.pk, job.job_id]) if job.state == DONE else None
    )
    return {**job.as_dict(), "download_url": url}


class ExportListApi(APIView):
    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=sorted(FORMATS))
        tag_ids = id_list_field(
            required=False, default=list, help_text="Only the images of any of these tags."
        )
        filter = serializers.CharField(
            required=False,
            default="all",
            help_text="A gallery filter: all, tagged, untagged (or one another app adds).",
        )
        saved_filter_id = IdField(
            required=False,
            allow_null=True,
            default=None,
            help_text="Export the images of this saved filter (instead of `tag_ids` and "
            "`filter`), as it selects them when the export starts.",
        )

        class Meta:
            ref_name = "DatasetExportStart"

    @extend_schema(
        operation_id="exports_list",
        responses={200: ExportJobSerializer(many=True), **errors(403)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        return Response([_body(project, job) for job in recent_exports(project=project)])

    @extend_schema(
        operation_id="exports_start",
        request=InputSerializer,
        responses={202: ExportJobSerializer, **errors(400, 403, 422)},
        description="Choose the images by `tag_ids` and `filter`, or by `saved_filter_id` "
        "(not both: 422).",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        saved_filter_id = data.validated_data["saved_filter_id"]
        job = start_export(
            project=project,
            format_name=data.validated_data["format"],
            by=request.user,
            selection=ExportSelection(
                tag_ids=tuple(data.validated_data["tag_ids"]),
                status=data.validated_data["filter"],
            ),
            saved_filter=get_saved_filter(project, saved_filter_id)
            if saved_filter_id is not None
            else None,
        )
        return Response(_body(project, job), status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(APIView):
    @extend_schema(
        operation_id="exports_retrieve",
        responses={200: ExportJobSerializer, **errors(403)},
    )
    def get(self, request: Request, project_id: int, export_id: UUID) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        return Response(_body(project, get_export(project=project, job_id=str(export_id))))


class ExportDownloadApi(APIView):
    @extend_schema(
        operation_id="exports_download",
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The archive."
            ),
            **errors(403, 422),
        },
    )
    def get(self, request: Request, project_id: int, export_id: UUID) -> FileResponse:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        job, archive = open_export(project=project, job_id=str(export_id))
        return stream_file(
            archive,
            as_attachment=True,
            filename=job.download_name,
            content_type="application/zip",
        )
