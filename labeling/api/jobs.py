"""REST API of dataset import jobs: start one (admins), poll it (reviewers and up).

The same calls as the Datasets page (labeling.views.datasets): `start_import` keeps the upload
and queues the worker; `get_import` reads the job's last written status. A job always ends,
done or failed with a reason (labeling.services.import_jobs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.models import Role
from labeling.services.import_jobs import ImportJob, get_import, start_import


class ImportJobSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    format = serializers.CharField()
    labels_only = serializers.BooleanField(
        help_text="Annotations for images already in the project, no images."
    )
    state = serializers.ChoiceField(choices=["queued", "running", "done", "failed"])
    progress = serializers.FloatField(help_text="0..1.")
    message = serializers.CharField(help_text="Where the job stands, or why it failed.")
    report = serializers.DictField(allow_null=True, help_text="Counts, once done.")
    problems = serializers.ListField(
        child=serializers.DictField(), help_text="Items refused, each with its reason."
    )
    skipped = serializers.ListField(
        child=serializers.DictField(), help_text="Labels only: items left out, with why."
    )
    is_finished = serializers.BooleanField()
    created = serializers.DateTimeField()

    class Meta:
        ref_name = "ImportJob"


def _job_body(job: ImportJob) -> dict[str, object]:
    return ImportJobSerializer(
        {
            "job_id": job.job_id,
            "format": job.format,
            "labels_only": job.labels_only,
            "state": job.state,
            "progress": job.progress,
            "message": job.message,
            "report": job.report,
            "problems": job.problems,
            "skipped": job.skipped,
            "is_finished": job.is_finished,
            "created": datetime.fromtimestamp(job.created, tz=UTC),
        }
    ).data


class ImportStartApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        archive = serializers.FileField(
            help_text="A zip of images and annotations; with contents=labels, a zip of "
            "annotations or the bare annotation file."
        )
        format = serializers.CharField(help_text="coco, voc, yolo, csv or folders.")
        contents = serializers.ChoiceField(
            choices=["images", "labels"],
            default="images",
            help_text="labels: label images the project has already, matched by file name.",
        )

        class Meta:
            ref_name = "ImportStart"

    @extend_schema(
        operation_id="imports_start",
        request={"multipart/form-data": InputSerializer},
        responses={202: ImportJobSerializer, **errors(400, 403, 422)},
        description="Start a dataset import (admins); poll the job until `is_finished`.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = start_import(
            project=project,
            upload=data.validated_data["archive"],
            format_name=data.validated_data["format"],
            by=request.user,
            labels_only=data.validated_data["contents"] == "labels",
        )
        return Response(_job_body(job), status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    @extend_schema(
        operation_id="imports_retrieve", responses={200: ImportJobSerializer, **errors(403)}
    )
    def get(self, request: Request, project_id: int, job_id: UUID) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        return Response(_job_body(get_import(project=project, job_id=str(job_id))))
