"""Quick test (members; storing the result needs the reviewer role): predict.quick_test, and
for a test not stored the nearest training images (similar.training_images_like_upload)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import (
    errors,
)
from predictions.services.predict import quick_test
from predictions.services.similar import UPLOAD_LIKE_COUNT, training_images_like_upload
from project.ids import IdField


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
        similar_image_ids = serializers.ListField(
            child=serializers.IntegerField(),
            allow_null=True,
            help_text=(
                f"Not stored: up to {UPLOAD_LIKE_COUNT} training images most like the tested "
                "image by the embedding its model returned, most similar first (empty when no "
                "training image has an embedding yet). Null when stored (image_id's gallery "
                "link ?like=<image_id> shows them) or when the iteration's embedding is not "
                "comparable with the training images' (a fine-tuned model, or a backbone the "
                "project no longer uses)."
            ),
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
        like = training_images_like_upload(project=project, by=request.user, result=result)
        similar = like.image_ids if like is not None and like.is_comparable else None
        body = {
            "iteration_id": result.target.iteration_id,
            "prediction_id": prediction.pk if prediction else None,
            "image_id": prediction.image_id if prediction else None,
            "name": result.name,
            "uncertainty": result.outcome.uncertainty,
            "predictions": result.outcome.results,
            "similar_image_ids": similar,
        }
        return Response(self.OutputSerializer(body).data)
