"""Native REST API of stored predictions (reviewers and admins): the Predictions tab's list.

The same call as the tab (predictions.services.ranking.ranked_predictions), so "most gain" here
is the order a reviewer sees, with each row's reason. Ranked lists page by number (an order that
depends on the whole open set has no stable cursor).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.models import Role
from predictions.services.ranking import SORTS, ranked_predictions
from project.errors import NotFound
from project.ids import IdField, parse_optional_id

MAX_PAGE_SIZE = 200


class StoredPredictionListApi(APIView):
    class QuerySerializer(serializers.Serializer):
        sort = serializers.ChoiceField(
            choices=list(SORTS),
            default="gain",
            help_text="gain (Most gain: what to review first), newest, lowest or highest "
            "probability of `tag`.",
        )
        tag = IdField(required=False, help_text="The tag of the lowest/highest sorts.")
        page = serializers.IntegerField(required=False, min_value=1, default=1)
        page_size = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=40
        )

        class Meta:
            ref_name = "StoredPredictionQuery"

    class PredictionSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        image_id = serializers.IntegerField()
        created = serializers.DateTimeField()
        uncertainty = serializers.FloatField(help_text="0 = sure, 1 = a coin toss.")
        predictions = serializers.ListField(
            child=serializers.DictField(), help_text="Tags (or boxes) with probabilities."
        )
        reason = serializers.CharField(help_text="Most gain only: why it is worth a label now.")

        class Meta:
            ref_name = "StoredPrediction"

    class PageSerializer(serializers.Serializer):
        page = serializers.IntegerField()
        has_more = serializers.BooleanField()
        results = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "StoredPredictionPage"

    @extend_schema(
        operation_id="stored_predictions_list",
        parameters=[QuerySerializer],
        responses={200: PageSerializer, **errors(400, 403)},
        description="Open stored predictions of one iteration in the Predictions tab's order.",
    )
    def get(self, request: Request, project_id: int, iteration_id: str) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        iteration_pk = parse_optional_id(iteration_id)
        if iteration_pk is None or not project.iterations.filter(pk=iteration_pk).exists():
            raise NotFound("This iteration does not exist in this project.")
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params: dict[str, Any] = query.validated_data
        page = ranked_predictions(
            project=project,
            iteration_id=iteration_pk,
            sort=params["sort"],
            tag_id=params.get("tag"),
            page=params["page"],
            size=params["page_size"],
        )
        rows = [
            {
                "id": prediction.pk,
                "image_id": prediction.image_id,
                "created": prediction.created,
                "uncertainty": prediction.uncertainty,
                "predictions": prediction.results,
                "reason": page.reasons.get(prediction.pk, ""),
            }
            for prediction in page.predictions
        ]
        body = {
            "page": page.page,
            "has_more": page.has_more,
            "results": self.PredictionSerializer(rows, many=True).data,
        }
        return Response(body)
