"""Suggested tags and boxes (predictions.services.suggestions): run (reviewers), list and accept
one (members), accept all above a confidence (reviewers).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_image, access_project
from labeling.api.common import (
    PageQuerySerializer,
    errors,
    keyset_page,
    page_serializer,
    paged_body,
)
from labeling.api.images import get_image
from labeling.models import Project, Role
from labeling.serializers import ImageOutputSerializer
from predictions.services.suggestions import (
    accept_suggestion,
    accept_suggestions_above,
    is_low_confidence,
    open_suggestions,
    request_suggestions,
    suggestion_confidence,
    suggestion_progress,
)


class SuggestionSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    iteration_id = serializers.IntegerField()
    confidence = serializers.FloatField(help_text="Its least sure tag or box, 0..1.")
    is_low_confidence = serializers.BooleanField()
    tags = serializers.ListField(child=serializers.DictField(), help_text="Classification.")
    boxes = serializers.ListField(child=serializers.DictField(), help_text="Detection.")
    created = serializers.DateTimeField()

    class Meta:
        ref_name = "Suggestion"


SuggestionPage = page_serializer("SuggestionPage", SuggestionSerializer)


class SuggestionProgressSerializer(serializers.Serializer):
    iteration_id = serializers.IntegerField(allow_null=True, help_text="The last run's model.")
    is_running = serializers.BooleanField()
    is_stalled = serializers.BooleanField(help_text="Its worker stopped storing suggestions.")
    waiting = serializers.IntegerField(help_text="Untagged images with a suggestion.")
    without = serializers.IntegerField(help_text="Untagged images without one yet.")

    class Meta:
        ref_name = "SuggestionProgress"


def _progress_body(project: Project) -> Any:
    progress = suggestion_progress(project)
    return SuggestionProgressSerializer(
        {
            "iteration_id": progress.run.iteration_id if progress.run else None,
            "is_running": progress.is_running,
            "is_stalled": progress.is_stalled,
            "waiting": progress.waiting,
            "without": progress.without,
        }
    ).data


class SuggestionListApi(APIView):
    @extend_schema(
        operation_id="suggestions_list",
        parameters=[PageQuerySerializer],
        responses={200: SuggestionPage, **errors(400)},
        description="Suggestions waiting on untagged training images, newest first.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        query = PageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = open_suggestions(project).select_related("iteration")
        page = keyset_page(
            rows, after=query.validated_data.get("after"), size=query.validated_data["page_size"]
        )
        results = SuggestionSerializer(
            [
                {
                    "image_id": s.image_id,
                    "iteration_id": s.iteration_id,
                    "confidence": suggestion_confidence(s),
                    "is_low_confidence": is_low_confidence(s),
                    "tags": s.tags,
                    "boxes": s.boxes,
                    "created": s.created,
                }
                for s in page.items
            ],
            many=True,
        ).data
        return Response(paged_body(request, page, count=rows.count(), results=results))

    @extend_schema(
        operation_id="suggestions_run",
        request=None,
        responses={202: SuggestionProgressSerializer, **errors(403, 422)},
        description="Suggest tags (or boxes) for the untagged images with the current "
        "iteration (reviewers and admins); poll suggestions/status/.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        request_suggestions(project=project, by=request.user)
        return Response(_progress_body(project), status=status.HTTP_202_ACCEPTED)


class SuggestionStatusApi(APIView):
    @extend_schema(
        operation_id="suggestions_status", responses={200: SuggestionProgressSerializer, **errors()}
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        return Response(_progress_body(project))


class SuggestionAcceptAllApi(APIView):
    class InputSerializer(serializers.Serializer):
        min_confidence = serializers.FloatField(help_text="0..1: accept those at least this sure.")

        class Meta:
            ref_name = "SuggestionAcceptAll"

    class OutputSerializer(serializers.Serializer):
        accepted = serializers.IntegerField()
        skipped = serializers.IntegerField(help_text="Changed meanwhile, or refused by a rule.")

        class Meta:
            ref_name = "SuggestionAcceptReport"

    @extend_schema(
        operation_id="suggestions_accept_all",
        request=InputSerializer,
        responses={200: OutputSerializer, **errors(400, 403, 422)},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        report = accept_suggestions_above(
            project=project, min_confidence=data.validated_data["min_confidence"], by=request.user
        )
        body = {"accepted": report.accepted, "skipped": report.skipped}
        return Response(self.OutputSerializer(body).data)


class SuggestionAcceptApi(APIView):
    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            help_text="The image version you saw; a newer one answers 409. Omitted: no check.",
        )

        class Meta:
            ref_name = "SuggestionAccept"

    @extend_schema(
        operation_id="image_suggestion_accept",
        request=InputSerializer,
        responses={200: ImageOutputSerializer, **errors(400, 403, 409, 422)},
        description="Label the image with its suggested tags or boxes.",
    )
    def post(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id)
        image = access_image(request.user, project, image_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        accept_suggestion(image=image, by=request.user, version=data.validated_data["version"])
        image = get_image(request, project, image.pk)
        return Response(ImageOutputSerializer(image, context={"request": request}).data)
