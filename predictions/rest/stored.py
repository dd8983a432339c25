"""Stored predictions (reviewers and admins): the Predictions tab's orders, keyset-paged by
predictions.services.stored_pages, so "most gain" here is the order a reviewer sees, with each
row's reason, and a walk through the pages neither skips nor repeats a row. Promote ("Save and
close", optionally with the tags or boxes to save) and dismiss through predictions.services.triage.
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
from labeling.api.images import MAX_BULK_IMAGES
from labeling.api.regions import BoxSerializer, box_spec
from labeling.models import Role
from labeling.services.projects import get_tags
from predictions.services.ranking import SORTS
from predictions.services.stored_pages import stored_prediction_page
from predictions.services.triage import dismiss_predictions, promote_prediction
from project.errors import NotFound
from project.ids import IdField, id_list_field, parse_optional_id

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
        after = serializers.CharField(
            required=False,
            max_length=100,
            help_text="Cursor: the `next_cursor` of the previous page (keyset paging: rows "
            "promoted or dismissed meanwhile make no row skipped or shown twice).",
        )
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
        count = serializers.IntegerField(help_text="Open predictions the sort lists.")
        next_cursor = serializers.CharField(
            allow_null=True, help_text="Pass as `after` for the next page."
        )
        next = serializers.CharField(allow_null=True, help_text="URL of the next page.")
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
        page = stored_prediction_page(
            project=project,
            iteration_id=iteration_pk,
            sort=params["sort"],
            tag_id=params.get("tag"),
            after=params.get("after"),
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
            "count": page.count,
            "next_cursor": page.next_cursor,
            "next": next_page_url(request, page.next_cursor),
            "results": self.PredictionSerializer(rows, many=True).data,
        }
        return Response(body)


# --- Triage: promote ("Save and close") and dismiss --------------------------------------------


class PromotionSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    status = serializers.CharField(help_text="promoted: the image is training data now.")
    already_done = serializers.BooleanField(help_text="It had been promoted before this call.")

    class Meta:
        ref_name = "Promotion"


class PredictionPromoteApi(APIView):
    class InputSerializer(serializers.Serializer):
        tag_ids = id_list_field(
            required=False,
            allow_empty=True,
            help_text="Classification: the tags to save it with (default: its current tags).",
        )
        regions = serializers.ListField(
            child=BoxSerializer(),
            required=False,
            allow_empty=True,
            help_text="Detection: the boxes to save it with (default: its current boxes).",
        )

        class Meta:
            ref_name = "PredictionPromote"

    @extend_schema(
        operation_id="stored_predictions_promote",
        request=InputSerializer,
        responses={200: PromotionSerializer, **errors(400, 403, 422)},
        description="Move a stored prediction's image into the training data, with the given "
        "tags or boxes (or the labels it has), as “Save and close” does. Exactly once: a "
        "second call answers already_done.",
    )
    def post(self, request: Request, project_id: int, image_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        tags = get_tags(project, values["tag_ids"]) if "tag_ids" in values else None
        regions = (
            [box_spec(project, box) for box in values["regions"]] if "regions" in values else None
        )
        pk = parse_optional_id(image_id)
        if pk is None:
            raise NotFound("This image is not a stored prediction of this project.")
        promotion = promote_prediction(
            project=project, image_id=pk, by=request.user, tags=tags, regions=regions
        )
        body = {
            "image_id": pk,
            "status": promotion.prediction.status,
            "already_done": promotion.already_done,
        }
        return Response(PromotionSerializer(body).data)


class PredictionDismissApi(APIView):
    class InputSerializer(serializers.Serializer):
        image_ids = id_list_field(allow_empty=False, max_length=MAX_BULK_IMAGES)

        class Meta:
            ref_name = "PredictionDismiss"

    class OutputSerializer(serializers.Serializer):
        count = serializers.IntegerField(help_text="Open predictions dismissed.")

        class Meta:
            ref_name = "PredictionDismissResult"

    @extend_schema(
        operation_id="stored_predictions_dismiss",
        request=InputSerializer,
        responses={200: OutputSerializer, **errors(400, 403, 422)},
        description="Remove open stored predictions from the tab without training on them.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.REVIEWER)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        count = dismiss_predictions(
            project=project, image_ids=data.validated_data["image_ids"], by=request.user
        )
        return Response(self.OutputSerializer({"count": count}).data)
