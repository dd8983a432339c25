"""Native API: GET /api/projects/<id>/health/, the dataset health check as JSON, and POST
/api/projects/<id>/health/refresh/, the Health tab's "Check again" button.

The same report the Health tab shows (training.services.health); reading it queues a fresh
check when the project's data changed since the last one, and `status` says whether one runs.
Any member reads and refreshes it, as on the tab.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.models import Project
from training.models import HealthReport
from training.services.health import current_report, report_lines, request_health_check


class HealthLineSerializer(serializers.Serializer):
    """One rule's result: the images that break it, and the gallery link showing them."""

    key = serializers.CharField()
    title = serializers.CharField()
    status = serializers.CharField(help_text="pass, warn or fail")
    message = serializers.CharField()
    image_count = serializers.IntegerField()
    image_ids = serializers.ListField(child=serializers.IntegerField())
    gallery_url = serializers.CharField(allow_blank=True)


class HealthReportSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="queued, running, done or failed")
    failure_message = serializers.CharField(allow_blank=True)
    checked = serializers.DateTimeField(allow_null=True)
    image_count = serializers.IntegerField()
    duration_s = serializers.FloatField()
    rules = HealthLineSerializer(many=True)


def _report_body(project: Project, report: HealthReport) -> dict[str, object]:
    lines = report_lines(project, report)
    return {
        "status": report.status,
        "failure_message": report.failure_message,
        "checked": report.finished.isoformat() if report.finished else None,
        "image_count": report.image_count,
        "duration_s": round(report.duration_s, 3),
        "rules": [{k: line[k] for k in HealthLineSerializer().fields} for line in lines],
    }


class HealthApi(APIView):
    @extend_schema(
        responses={200: HealthReportSerializer, **errors()},
        summary="The project's dataset health check",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        return Response(_report_body(project, current_report(project)))


class HealthRefreshApi(APIView):
    @extend_schema(
        request=None,
        responses={202: HealthReportSerializer, **errors()},
        summary="Run the dataset health check again",
        description="Queues a check unless one is queued or running (then it answers that one). "
        "The answer is the stored report with `status` queued or running; poll the health "
        "check until it is done or failed.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        report = request_health_check(project)
        report.refresh_from_db()  # a lost enqueue may have failed it meanwhile
        return Response(_report_body(project, report), status=status.HTTP_202_ACCEPTED)
