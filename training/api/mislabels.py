"""Native API of the "Possible mislabels" review queue (reviewers and admins, as the page):
the queue, most likely error first, and accept (relabel as suggested) or keep (the label is not
flagged again) one suggestion.

The same service calls as training.views_health: review_queue, accept_suggestion, keep_label
(training.services.label_errors), which check the role and whether the suggestion still applies.
Keyset paging as every list (`after` = the previous page's `next_cursor`): the cursor is a place
in the iteration's fixed candidate list, so suggestions accepted or kept while a client pages
shift nothing (training.services.label_errors.review_queue_page).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors, next_page_url
from project.ids import IdField
from training.services.label_errors import (
    REVIEW_ROLE,
    Suggestion,
    accept_suggestion,
    keep_label,
    review_queue_page,
)

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20  # the page's queue shows 20 (training.views_health.QUEUE_SHOWN)


class MislabelSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    label_key = serializers.CharField(help_text="Names the disputed label; send it to accept/keep.")
    kind = serializers.CharField(
        help_text="label (a classification tag), or for detection wrong-tag, missed, misplaced."
    )
    given = serializers.CharField(help_text="The label as it is, in words.")
    suggested = serializers.CharField(help_text="What accepting makes it, in words.")
    confidence = serializers.FloatField(help_text="0..1: how sure the model is of `suggested`.")
    margin = serializers.FloatField()
    detected = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="Detection: the model's box (left, top, width, height in 0..1); else null.",
    )

    class Meta:
        ref_name = "Mislabel"


def _row(s: Suggestion) -> dict[str, Any]:
    return {
        "image_id": s.image_id,
        "label_key": s.label_key,
        "kind": s.kind,
        "given": s.given,
        "suggested": s.suggested,
        "confidence": s.confidence,
        "margin": s.margin,
        "detected": list(s.detected) if s.detected is not None else None,
    }


class MislabelListApi(APIView):
    class QuerySerializer(serializers.Serializer):
        after = serializers.CharField(
            required=False, max_length=50, help_text="The `next_cursor` of the previous page."
        )
        page_size = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
        )

        class Meta:
            ref_name = "MislabelQuery"

    class PageSerializer(serializers.Serializer):
        iteration_id = serializers.IntegerField(
            allow_null=True, help_text="The iteration whose scores found them; null if none."
        )
        count = serializers.IntegerField(help_text="Suggestions in the queue.")
        next_cursor = serializers.CharField(
            allow_null=True, help_text="Pass as `after` for the next page."
        )
        next = serializers.CharField(allow_null=True, help_text="URL of the next page.")
        results = MislabelSerializer(many=True)

        class Meta:
            ref_name = "MislabelPage"

    @extend_schema(
        operation_id="mislabels_list",
        parameters=[QuerySerializer],
        responses={200: PageSerializer, **errors(400, 403)},
        description="The possible mislabels that still apply, most likely error first (reviewers "
        "and admins). Found from the latest completed quick iteration's out-of-fold scores "
        "(detection: the latest completed iteration); empty when there is none.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=REVIEW_ROLE)
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = review_queue_page(
            project,
            request.user,
            after=query.validated_data.get("after"),
            size=query.validated_data["page_size"],
        )
        body = {
            "iteration_id": page.iteration_id,
            "count": page.count,
            "next_cursor": page.next_cursor,
            "next": next_page_url(request, page.next_cursor),
            "results": [_row(s) for s in page.suggestions],
        }
        return Response(self.PageSerializer(body).data)


class MislabelActionSerializer(serializers.Serializer):
    image_id = IdField()
    label_key = serializers.CharField(max_length=100)

    class Meta:
        ref_name = "MislabelAction"


class MislabelResultSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    label_key = serializers.CharField()
    status = serializers.CharField(help_text="accepted (relabeled) or kept.")

    class Meta:
        ref_name = "MislabelResult"


_ACTION_ERRORS = errors(400, 403, 409, 422)


class MislabelAcceptApi(APIView):
    @extend_schema(
        operation_id="mislabels_accept",
        request=MislabelActionSerializer,
        responses={200: MislabelResultSerializer, **_ACTION_ERRORS},
        description="Relabel the image as suggested, through the tagging (or box) service, so "
        "the project's rules and the image's version apply. 404 when the suggestion is no "
        "longer in the queue (the label changed, or someone kept it).",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=REVIEW_ROLE)
        data = MislabelActionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        accept_suggestion(project=project, by=request.user, **data.validated_data)
        return Response({**data.validated_data, "status": "accepted"})


class MislabelKeepApi(APIView):
    @extend_schema(
        operation_id="mislabels_keep",
        request=MislabelActionSerializer,
        responses={200: MislabelResultSerializer, **errors(400, 403)},
        description="Keep the label: the image is not flagged again for it. 404 when the "
        "suggestion is no longer in the queue.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=REVIEW_ROLE)
        data = MislabelActionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        keep_label(project=project, by=request.user, **data.validated_data)
        return Response({**data.validated_data, "status": "kept"})
