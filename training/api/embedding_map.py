"""Native API: POST /api/projects/<id>/map/refresh/, the embedding map's "Lay out again" button.

The same service the page's button calls (training.services.embedding_map.request_map), with the
page's role (any member). It answers the layout job's state; GET /api/projects/<id>/map/ reads
the map and its points once the job is done.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from training.services.embedding_map import request_map


class EmbeddingMapJobSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="queued, running, done or failed")
    failure_message = serializers.CharField(allow_blank=True)
    requested = serializers.DateTimeField(allow_null=True)
    laid_out = serializers.DateTimeField(allow_null=True, help_text="When the last layout ended.")
    image_count = serializers.IntegerField(help_text="Images in the last layout.")


class EmbeddingMapRefreshApi(APIView):
    @extend_schema(
        request=None,
        responses={202: EmbeddingMapJobSerializer, **errors()},
        summary="Lay the embedding map out again",
        description="Queues a layout unless one is queued or running (then it answers that "
        "one). Poll GET /api/projects/{project_id}/map/ until its status is done or failed.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        emap = request_map(project)
        emap.refresh_from_db()  # a lost enqueue may have failed it meanwhile
        body = {
            "status": emap.status,
            "failure_message": emap.failure_message,
            "requested": emap.requested,
            "laid_out": emap.finished,
            "image_count": emap.image_count,
        }
        return Response(EmbeddingMapJobSerializer(body).data, status=status.HTTP_202_ACCEPTED)
