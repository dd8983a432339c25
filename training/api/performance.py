"""REST API of an iteration's performance: figures at a threshold, and per-image results.

Any member reads them, as the performance page. Both come from the iteration's stored scores
through training.services.image_results, which calls the page's own figure functions.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    KeysetPage,
    errors,
    page_serializer,
    paged_body,
)
from project.ids import IdField
from training.api.iterations import get_iteration
from training.models import Iteration
from training.services.detection_performance import DEFAULT_OVERLAP, OVERLAP_MAX, OVERLAP_MIN
from training.services.figures import compare
from training.services.image_results import figures_at_thresholds, image_results, require_scores


class ThresholdQuerySerializer(serializers.Serializer):
    threshold = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Probability threshold; default: the iteration's saved one.",
    )
    overlap = serializers.FloatField(
        required=False,
        min_value=OVERLAP_MIN,
        max_value=OVERLAP_MAX,
        default=DEFAULT_OVERLAP,
        help_text="Detection only: the IoU a detection needs to find a true box.",
    )

    class Meta:
        ref_name = "PerformanceQuery"


def _thresholds(request: Request, iteration: Iteration, query_class: type) -> dict[str, Any]:
    query = query_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    params: dict[str, Any] = dict(query.validated_data)
    params.setdefault("threshold", iteration.suggested_threshold)
    return params


class TagFiguresSerializer(serializers.Serializer):
    tag_id = serializers.IntegerField(allow_null=True, help_text="Null if deleted since.")
    name = serializers.CharField()
    image_count = serializers.IntegerField(help_text="Training images of the tag.")
    precision = serializers.FloatField(allow_null=True, help_text="Null: nothing predicted.")
    recall = serializers.FloatField(allow_null=True)
    ap = serializers.FloatField(allow_null=True, help_text="Average precision (AP@0.5 boxes).")
    roc_auc = serializers.FloatField(allow_null=True, help_text="Classification only.")
    ap_50_95 = serializers.FloatField(allow_null=True, help_text="Detection only.")

    class Meta:
        ref_name = "TagFigures"


class FiguresSerializer(serializers.Serializer):
    iteration_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["classification", "detection"])
    threshold = serializers.FloatField()
    overlap = serializers.FloatField(allow_null=True, help_text="Detection only.")
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    map = serializers.FloatField(allow_null=True, help_text="mAP (mAP@0.5 for detection).")
    roc_auc = serializers.FloatField(allow_null=True, help_text="Classification only.")
    map_50_95 = serializers.FloatField(allow_null=True, help_text="Detection only.")
    accuracy = serializers.FloatField(allow_null=True, help_text="Multiclass only.")
    per_tag = TagFiguresSerializer(many=True)

    class Meta:
        ref_name = "PerformanceFigures"


def _figures_body(iteration: Iteration, figures: dict[str, Any], params: dict[str, Any]) -> Any:
    is_detection = iteration.project.is_detection
    tag_ids = dict(iteration.tags.values_list("name", "tag_id"))
    per_tag = [
        {
            "tag_id": tag_ids.get(tag["name"]),
            "name": tag["name"],
            "image_count": tag.get("image_count") or 0,
            "precision": tag.get("precision"),
            "recall": tag.get("recall"),
            "ap": tag.get("ap"),
            "roc_auc": tag.get("roc_auc"),
            "ap_50_95": tag.get("ap_50_95"),
        }
        for tag in figures.get("per_tag", [])
    ]
    return FiguresSerializer(
        {
            "iteration_id": iteration.pk,
            "kind": "detection" if is_detection else "classification",
            "threshold": params["threshold"],
            "overlap": params["overlap"] if is_detection else None,
            "precision": figures.get("precision"),
            "recall": figures.get("recall"),
            "map": figures.get("map"),
            "roc_auc": figures.get("roc_auc"),
            "map_50_95": figures.get("map_50_95"),
            "accuracy": figures.get("accuracy"),
            "per_tag": per_tag,
        }
    ).data


class PerformanceApi(APIView):
    @extend_schema(
        operation_id="iterations_performance",
        parameters=[ThresholdQuerySerializer],
        responses={200: FiguresSerializer, **errors(400, 422)},
        description="Per-tag and overall precision, recall, AP (and ROC AUC, or mAP@[.5:.95] "
        "for detection) of a completed iteration at a probability threshold (and overlap "
        "threshold), from its out-of-fold or held-out scores, as the performance page shows.",
    )
    def get(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id)
        iteration = get_iteration(project, iteration_id)
        params = _thresholds(request, iteration, ThresholdQuerySerializer)
        figures = figures_at_thresholds(iteration, params["threshold"], params["overlap"])
        return Response(_figures_body(iteration, figures, params))


class ImageResultSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    name = serializers.CharField()
    is_mispredicted = serializers.BooleanField(
        help_text="Its predicted labels differ from its true ones at these thresholds."
    )
    truth = serializers.ListField(
        child=serializers.DictField(),
        help_text="True tags {tag_id, name}; detection: boxes with left, top, width, height.",
    )
    predictions = serializers.ListField(
        child=serializers.DictField(),
        help_text="Classification: every tag {tag_id, name, probability, is_predicted}, "
        "highest first; detection: the boxes at or above the threshold with probability.",
    )
    fold = serializers.IntegerField(
        allow_null=True, help_text="Classification: cross-validation fold (-1: held out)."
    )
    missed = serializers.IntegerField(allow_null=True, help_text="Detection: true boxes missed.")
    wrong = serializers.IntegerField(allow_null=True, help_text="Detection: wrong boxes.")

    class Meta:
        ref_name = "ImageResult"


ImageResultPage = page_serializer("ImageResultPage", ImageResultSerializer)


class ImageResultQuerySerializer(ThresholdQuerySerializer):
    mispredicted = serializers.BooleanField(
        required=False, default=False, help_text="Only the images mispredicted at the thresholds."
    )
    after = IdField(required=False, help_text="Cursor: the page after this image id.")
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE
    )

    class Meta:
        ref_name = "ImageResultQuery"


class ImageResultListApi(APIView):
    @extend_schema(
        operation_id="iterations_image_results",
        parameters=[ImageResultQuerySerializer],
        responses={200: ImageResultPage, **errors(400, 422)},
        description="Each scored image's true and predicted labels at the thresholds, newest "
        "image first; `mispredicted=true` keeps the ones the performance page outlines in red.",
    )
    def get(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id)
        iteration = get_iteration(project, iteration_id)
        params = _thresholds(request, iteration, ImageResultQuerySerializer)
        results = image_results(iteration, params["threshold"], params["overlap"])
        if params["mispredicted"]:
            results = [result for result in results if result.is_mispredicted]
        after = params.get("after")
        matching = len(results)
        if after is not None:
            results = [result for result in results if result.image_id < after]
        size = params["page_size"]
        shown = results[:size]
        cursor = shown[-1].image_id if len(results) > size and shown else None
        rows = [
            {
                "image_id": r.image_id,
                "name": r.name,
                "is_mispredicted": r.is_mispredicted,
                "truth": r.truth,
                "predictions": r.predictions,
                "fold": r.fold,
                "missed": r.counts.get("missed"),
                "wrong": r.counts.get("wrong"),
            }
            for r in shown
        ]
        page = KeysetPage(shown, cursor)
        data = ImageResultSerializer(rows, many=True).data
        return Response(paged_body(request, page, count=matching, results=data))


# --- Two iterations side by side ---------------------------------------------------------------


class TripleSerializer(serializers.Serializer):
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    ap = serializers.FloatField(allow_null=True, help_text="AP of a tag; mAP overall.")

    class Meta:
        ref_name = "CompareFigures"


class DeltaSerializer(serializers.Serializer):
    delta = serializers.FloatField(help_text="Second minus first.")
    trend = serializers.ChoiceField(choices=["up", "down", "same"])

    class Meta:
        ref_name = "CompareDelta"


class ChangeSerializer(serializers.Serializer):
    precision = DeltaSerializer(allow_null=True)
    recall = DeltaSerializer(allow_null=True)
    ap = DeltaSerializer(allow_null=True)

    class Meta:
        ref_name = "CompareChange"


class CompareRowSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="A tag's name, or Overall.")
    a = TripleSerializer(allow_null=True, required=False, help_text="The first iteration's.")
    b = TripleSerializer(allow_null=True, required=False, help_text="The second iteration's.")
    change = ChangeSerializer()

    class Meta:
        ref_name = "CompareRow"


class CompareSerializer(serializers.Serializer):
    a = serializers.IntegerField(help_text="The first iteration's id.")
    b = serializers.IntegerField(help_text="The second iteration's id.")
    overall = CompareRowSerializer()
    rows = CompareRowSerializer(many=True, help_text="Per tag, matched by name.")

    class Meta:
        ref_name = "IterationCompare"


class CompareQuerySerializer(serializers.Serializer):
    a = IdField(help_text="The first completed iteration.")
    b = IdField(help_text="The second completed iteration.")

    class Meta:
        ref_name = "CompareQuery"


class IterationCompareApi(APIView):
    @extend_schema(
        operation_id="iterations_compare",
        parameters=[CompareQuerySerializer],
        responses={200: CompareSerializer, **errors(400, 422)},
        description="Two iterations side by side at their saved thresholds, as the compare "
        "page shows them: precision, recall and AP per tag and overall, with each change.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        first = get_iteration(project, query.validated_data["a"])
        second = get_iteration(project, query.validated_data["b"])
        for iteration in (first, second):
            require_scores(iteration)
        body = {"a": first.pk, "b": second.pk, **compare(first, second)}
        return Response(CompareSerializer(body).data)
