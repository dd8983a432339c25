"""REST API of model exports: list and start an iteration's exports, download a finished one.

Admins only (an export carries the whole trained model): the lookup asks labeling.access for
the admin role, so a non-member gets 404 and a member below admin 403. The service
(training.services.model_export) holds the rules: platform, completed iteration, reuse.
"""

from __future__ import annotations

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.models import Role
from project.errors import NotFound
from project.hosts import absolute_url
from project.ids import parse_optional_id
from project.streaming import stream_file
from training.models import Iteration, ModelExport
from training.services.model_export import (
    SUPPORTED_PLATFORMS,
    download_name,
    get_model_export,
    list_model_exports,
    open_model_export,
    start_model_export,
)


def _admin_iteration(request: Request, project_id: int, iteration_id: int | str) -> Iteration:
    project = access_project(request.user, project_id, min_role=Role.ADMIN)
    pk = parse_optional_id(iteration_id)
    iteration = project.iterations.filter(pk=pk).first() if pk else None
    if iteration is None:
        raise NotFound("This iteration does not exist in this project.")
    iteration.project = project  # the role cache of access_project serves the service
    return iteration


class ExportOutputSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField(
        help_text="Absolute URL of the zip once `status` is done; null before."
    )
    progress = serializers.FloatField(source="progress_fraction", help_text="0..1 done.")

    class Meta:
        model = ModelExport
        ref_name = "ModelExport"
        fields = [
            "id",
            "iteration",
            "platform",
            "status",
            "progress",
            "progress_phase",
            "failure_reason",
            "failure_message",
            "size_bytes",
            "threshold",
            "created",
            "finished",
            "download_url",
        ]

    def get_download_url(self, export: ModelExport) -> str | None:
        if export.status != ModelExport.Status.DONE:
            return None
        iteration = export.iteration
        location = reverse(
            "api-model-export-download",
            args=[iteration.project_id, iteration.pk, export.pk],
        )
        return absolute_url(self.context["request"], location)


class ExportListApi(APIView):
    class StartSerializer(serializers.Serializer):
        platform = serializers.CharField(
            max_length=50,
            help_text=f"One of {', '.join(SUPPORTED_PLATFORMS)}; others answer 400 "
            "export_platform_not_supported.",
        )

        class Meta:
            ref_name = "ModelExportStart"

    @extend_schema(
        summary="List an iteration's model exports (admins)",
        responses={200: ExportOutputSerializer(many=True), **errors(403)},
    )
    def get(self, request: Request, project_id: int, iteration_id: str) -> Response:
        iteration = _admin_iteration(request, project_id, iteration_id)
        exports = list_model_exports(iteration)
        context = {"request": request}
        return Response(ExportOutputSerializer(exports, many=True, context=context).data)

    @extend_schema(
        summary="Export an iteration's model (admins): ONNX or TorchScript, built by a worker",
        description="Answers 202 with the queued (or already running) export, or 200 with "
        "the one already done for the iteration's current threshold; poll the list until "
        "`status` is done, then download the zip.",
        request=StartSerializer,
        responses={
            202: ExportOutputSerializer,
            200: ExportOutputSerializer,
            **errors(400, 403, 409),
        },
    )
    def post(self, request: Request, project_id: int, iteration_id: str) -> Response:
        iteration = _admin_iteration(request, project_id, iteration_id)
        body = self.StartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        export = start_model_export(
            iteration=iteration, platform=body.validated_data["platform"], by=request.user
        )
        # 202 while a worker still has it to do; 200 for an export already done (reused).
        done = export.status == ModelExport.Status.DONE
        code = status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED
        return Response(ExportOutputSerializer(export, context={"request": request}).data, code)


class ExportDownloadApi(APIView):
    @extend_schema(
        summary="Download a finished model export (zip)",
        responses={
            (200, "application/zip"): OpenApiResponse(description="The export's zip."),
            **errors(403),
        },
    )
    def get(
        self, request: Request, project_id: int, iteration_id: str, model_export_id: str
    ) -> FileResponse:
        iteration = _admin_iteration(request, project_id, iteration_id)
        pk = parse_optional_id(model_export_id)
        if not pk:
            raise NotFound("This export does not exist.")
        export = get_model_export(iteration=iteration, export_id=pk)
        return stream_file(
            open_model_export(export),
            as_attachment=True,
            filename=download_name(export),
            content_type="application/zip",
        )
