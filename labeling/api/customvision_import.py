"""REST API of the Custom Vision import: start one (or its continuation), poll it.

POST /api/customvision-imports/ {endpoint, training_key, project_id} answers 202 with the job;
GET /api/customvision-imports/<id>/ its state, progress and report (what was copied, what
was refused and why); GET /api/customvision-imports/ the caller's recent ones. Project creators
only (LOUPE_PROJECT_CREATORS); each sees their own imports.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import require_project_creator
from labeling.api.common import errors
from labeling.services.customvision_import import (
    get_customvision_import,
    recent_customvision_imports,
    start_customvision_import,
)


class RefusedSerializer(serializers.Serializer):
    item = serializers.CharField(help_text="The Custom Vision image (or tag) id.")
    code = serializers.CharField()
    message = serializers.CharField()

    class Meta:
        ref_name = "CustomVisionImportRefused"


class CvImportSerializer(serializers.Serializer):
    id = serializers.CharField()
    endpoint = serializers.CharField()
    source_project_id = serializers.CharField()
    source_name = serializers.CharField()
    project_id = serializers.IntegerField(allow_null=True, help_text="The new Loupe project.")
    state = serializers.ChoiceField(choices=["queued", "running", "done", "failed"])
    progress = serializers.FloatField()
    message = serializers.CharField()
    images_total = serializers.IntegerField()
    images_copied = serializers.IntegerField()
    images_refused = serializers.IntegerField()
    refused = RefusedSerializer(many=True)
    tags_created = serializers.ListField(child=serializers.CharField())
    notes = serializers.ListField(
        child=serializers.CharField(),
        help_text="What changed on the way, e.g. a domain Loupe has no model for.",
    )
    runs = serializers.IntegerField(help_text="Runs so far (a continuation is one more).")

    class Meta:
        ref_name = "CustomVisionImport"


class CvImportListApi(APIView):
    class InputSerializer(serializers.Serializer):
        endpoint = serializers.URLField(help_text="The Custom Vision (or Loupe) endpoint.")
        training_key = serializers.CharField(help_text="Sent to the worker only, never stored.")
        project_id = serializers.CharField(max_length=100, help_text="The source project's id.")

        class Meta:
            ref_name = "CustomVisionImportStart"

    @extend_schema(
        operation_id="customvision_imports_list",
        responses={200: CvImportSerializer(many=True), **errors(403, in_project=False)},
    )
    def get(self, request: Request) -> Response:
        require_project_creator(request.user)
        jobs = recent_customvision_imports(user=request.user)
        return Response([job.report() for job in jobs])

    @extend_schema(
        operation_id="customvision_imports_start",
        request=InputSerializer,
        responses={202: CvImportSerializer, **errors(400, 403, 422, in_project=False)},
    )
    def post(self, request: Request) -> Response:
        require_project_creator(request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = start_customvision_import(
            endpoint=data.validated_data["endpoint"],
            training_key=data.validated_data["training_key"],
            source_project_id=data.validated_data["project_id"],
            by=request.user,
        )
        return Response(job.report(), status=status.HTTP_202_ACCEPTED)


class CvImportDetailApi(APIView):
    @extend_schema(
        operation_id="customvision_imports_retrieve",
        responses={200: CvImportSerializer, **errors(403, 404, in_project=False)},
    )
    def get(self, request: Request, job_id: str) -> Response:
        require_project_creator(request.user)
        return Response(get_customvision_import(job_id=job_id, user=request.user).report())
