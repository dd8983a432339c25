"""Native REST API of predictions: stored predictions, suggestions, quick test, prediction keys.

Each endpoint calls the service its page calls, with the page's role:
- stored predictions (reviewers and admins): the Predictions tab's list through
  predictions.services.ranking.ranked_predictions, so "most gain" here is the order a reviewer
  sees, with each row's reason; ranked lists page by number (an order that depends on the whole
  open set has no stable cursor). Promote ("Save and close", optionally with the tags or boxes
  to save) and dismiss through predictions.services.triage;
- suggested tags and boxes (predictions.services.suggestions): run (reviewers), list and
  accept one (members), accept all above a confidence (reviewers);
- quick test (members; storing the result needs the reviewer role): predict.quick_test;
- prediction keys (admins): predictions.services.keys; a new secret is in the answer that made
  it and never again.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
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
from labeling.api.images import MAX_BULK_IMAGES, get_image
from labeling.api.regions import BoxSerializer, box_spec
from labeling.models import Project, Role
from labeling.serializers import ImageOutputSerializer
from labeling.services.projects import get_tags
from predictions.services.keys import IssuedKey, create_key, revoke_key, rotate_key
from predictions.services.predict import quick_test
from predictions.services.ranking import SORTS, ranked_predictions
from predictions.services.suggestions import (
    accept_suggestion,
    accept_suggestions_above,
    is_low_confidence,
    open_suggestions,
    request_suggestions,
    suggestion_confidence,
    suggestion_progress,
)
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


# --- Suggested tags and boxes ----------------------------------------------------------------


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


# --- Quick test ------------------------------------------------------------------------------


class QuickTestApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    class InputSerializer(serializers.Serializer):
        iteration_id = IdField(help_text="A completed iteration (published or not).")
        image = serializers.FileField(required=False, help_text="The image file…")
        url = serializers.CharField(
            required=False, max_length=2000, help_text="…or a public http(s) URL of one."
        )
        store = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Keep it in the Predictions tab (reviewers and admins).",
        )

        class Meta:
            ref_name = "QuickTest"

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if bool(attrs.get("image")) == bool(attrs.get("url")):
                raise serializers.ValidationError("Send an image file or an image URL (one).")
            return attrs

    class OutputSerializer(serializers.Serializer):
        iteration_id = serializers.IntegerField()
        prediction_id = serializers.IntegerField(allow_null=True, help_text="Null: not stored.")
        image_id = serializers.IntegerField(allow_null=True, help_text="The stored image.")
        name = serializers.CharField(help_text="The file's or the URL's name.")
        uncertainty = serializers.FloatField(help_text="0 = sure, 1 = a coin toss.")
        predictions = serializers.ListField(
            child=serializers.DictField(),
            help_text="Tags (or boxes) with probabilities, highest first.",
        )

        class Meta:
            ref_name = "QuickTestResult"

    @extend_schema(
        operation_id="quick_test",
        request={
            "multipart/form-data": InputSerializer,
            "application/json": InputSerializer,
        },
        responses={200: OutputSerializer, **errors(400, 403, 413, 422)},
        description="Run an image through a completed iteration, as the Quick test page does.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        upload = values.get("image")
        result = quick_test(
            project=project,
            iteration_id=values["iteration_id"],
            data=upload.read() if upload else None,
            name=upload.name if upload else "",
            url=values.get("url", ""),
            store=values["store"],
            by=request.user,
        )
        prediction = result.prediction
        body = {
            "iteration_id": result.target.iteration_id,
            "prediction_id": prediction.pk if prediction else None,
            "image_id": prediction.image_id if prediction else None,
            "name": result.name,
            "uncertainty": result.outcome.uncertainty,
            "predictions": result.outcome.results,
        }
        return Response(self.OutputSerializer(body).data)


# --- Prediction keys (admins) ----------------------------------------------------------------


class PredictionKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to tell keys apart.")
    created = serializers.DateTimeField()
    rotated = serializers.DateTimeField(allow_null=True)
    revoked = serializers.DateTimeField(allow_null=True)
    is_revoked = serializers.BooleanField()

    class Meta:
        ref_name = "PredictionKey"


class IssuedKeySerializer(PredictionKeySerializer):
    secret = serializers.CharField(
        help_text="The key itself: shown in this answer only, send it as `Prediction-Key`."
    )

    class Meta:
        ref_name = "IssuedPredictionKey"


PredictionKeyPage = page_serializer("PredictionKeyPage", PredictionKeySerializer)


def _issued(issued: IssuedKey) -> Any:
    body = PredictionKeySerializer(issued.key).data
    return IssuedKeySerializer({**body, "secret": issued.secret}).data


class PredictionKeyListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(
            max_length=100, help_text="What uses it, such as the app's name."
        )

        class Meta:
            ref_name = "PredictionKeyCreate"

    @extend_schema(
        operation_id="prediction_keys_list",
        parameters=[PageQuerySerializer],
        responses={200: PredictionKeyPage, **errors(400, 403)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        query = PageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = project.prediction_keys.all()
        page = keyset_page(
            rows, after=query.validated_data.get("after"), size=query.validated_data["page_size"]
        )
        results = PredictionKeySerializer(page.items, many=True).data
        return Response(paged_body(request, page, count=rows.count(), results=results))

    @extend_schema(
        operation_id="prediction_keys_create",
        request=InputSerializer,
        responses={201: IssuedKeySerializer, **errors(400, 403, 422)},
        description="Make a prediction key; its secret is in this answer and never again.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = create_key(project=project, name=data.validated_data["name"], by=request.user)
        return Response(_issued(issued), status=status.HTTP_201_CREATED)


def _key_id(key_id: int | str) -> int:
    pk = parse_optional_id(key_id)
    if pk is None:
        raise NotFound("This prediction key does not exist in this project.")
    return pk


class PredictionKeyDetailApi(APIView):
    @extend_schema(
        operation_id="prediction_keys_revoke",
        responses={200: PredictionKeySerializer, **errors(403)},
        description="Revoke the key for good: it stops working now; its row stays listed.",
    )
    def delete(self, request: Request, project_id: int, key_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        key = revoke_key(project=project, key_id=_key_id(key_id), by=request.user)
        return Response(PredictionKeySerializer(key).data)


class PredictionKeyRotateApi(APIView):
    @extend_schema(
        operation_id="prediction_keys_rotate",
        request=None,
        responses={200: IssuedKeySerializer, **errors(403, 422)},
        description="Give the key a new secret (in this answer only); the old one stops now.",
    )
    def post(self, request: Request, project_id: int, key_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        issued = rotate_key(project=project, key_id=_key_id(key_id), by=request.user)
        return Response(_issued(issued))
