"""Native API: GET /api/projects/<id>/health/, the dataset health check as JSON.

The same report the Health tab shows (training.services.health); reading it queues a fresh
check when the project's data changed since the last one, and `status` says whether one runs.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from training.services.health import current_report, report_lines


class HealthLineSerializer(serializers.Serializer):
    """One rule's result: the images that break it, and the gallery link showing them."""

    key = serializers.CharField()
    title = serializers.CharField()
    status = serializers.CharField(help_text="pass, warn or fail")
    message = serializers.CharField()
    image_count = serializers.IntegerField()
    image_ids = serializers.ListField(child=serializers.IntegerField())
    gallery_url = serializers.CharField(allow_blank=True)


class HealthApi(APIView):
    class HealthReportSerializer(serializers.Serializer):
        status = serializers.CharField(help_text="queued, running, done or failed")
        failure_message = serializers.CharField(allow_blank=True)
        checked = serializers.DateTimeField(allow_null=True)
        image_count = serializers.IntegerField()
        duration_s = serializers.FloatField()
        rules = HealthLineSerializer(many=True)

    @extend_schema(
        responses={200: HealthReportSerializer, **errors()},
        summary="The project's dataset health check",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        report = current_report(project)
        lines = report_lines(project, report)
        return Response(
            {
                "status": report.status,
                "failure_message": report.failure_message,
                "checked": report.finished.isoformat() if report.finished else None,
                "image_count": report.image_count,
                "duration_s": round(report.duration_s, 3),
                "rules": [{k: line[k] for k in HealthLineSerializer().fields} for line in lines],
            }
        )
