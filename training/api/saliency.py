"""Native API of "Where the model looked" (a Grad-CAM heat map of one prediction) and of an
iteration's per-tag context reliance: GET reads the job's state (and result), POST asks a worker
to compute it (202; poll the GET until done or failed).

The same calls as training.views_saliency, with the same roles: any member may ask about an image
they may open (stored predictions: reviewers and up, through access_image), and about a quick-test
upload by its sha256. The iteration must be a completed one with a model file; anything else is
404.
"""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.models import Project
from project.hosts import absolute_url
from project.ids import IdField
from project.streaming import stream_file
from training.services import context_reliance, saliency
from training.views_saliency import explained_for

_STATUS_HELP = '"" (never asked), queued, running, done or failed'


class WhereLookedTargetSerializer(serializers.Serializer):
    """What to explain: a project image, or an image sent to quick test (by its sha256)."""

    image_id = IdField(required=False, help_text="A project image (training or stored).")
    upload = serializers.CharField(
        required=False, help_text="The sha256 of an image sent to this iteration's quick test."
    )

    class Meta:
        ref_name = "WhereLookedTarget"

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("image_id" in attrs) == ("upload" in attrs):
            raise serializers.ValidationError("Send one of image_id or upload.")
        return attrs


class WhereLookedSerializer(serializers.Serializer):
    iteration_id = serializers.IntegerField()
    image_id = serializers.IntegerField(allow_null=True)
    upload = serializers.CharField(allow_null=True)
    status = serializers.CharField(allow_blank=True, help_text=_STATUS_HELP)
    message = serializers.CharField(allow_blank=True, help_text="Why it failed, in words.")
    tag_name = serializers.CharField(allow_blank=True, help_text="The explained prediction.")
    probability = serializers.FloatField(allow_null=True)
    box = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="A detector's explained box (left, top, width, height in 0..1); else null.",
    )
    overlay_url = serializers.CharField(
        allow_null=True, help_text="Once done: the heat map as a PNG of the image's size."
    )

    class Meta:
        ref_name = "WhereLooked"


def _target(request: Request, project: Project, iteration_id: int, data: Any) -> Any:
    """The service's Explained state for the validated target (LoupeError: 404 / 403)."""
    target = WhereLookedTargetSerializer(data=data)
    target.is_valid(raise_exception=True)
    values = target.validated_data
    params = {
        "iteration": iteration_id,
        "image": values.get("image_id"),
        "upload": values.get("upload"),
    }
    return explained_for(request, project, params)


def _body(request: Request, state: saliency.Explained) -> dict[str, Any]:
    key, is_upload = state.key[1:], state.key.startswith("u")
    overlay = None
    if state.status == saliency.DONE:
        query = f"upload={key}" if is_upload else f"image_id={key}"
        path = reverse(
            "api-where-looked-overlay",
            args=[state.iteration.project_id, state.iteration.pk],
        )
        overlay = absolute_url(request, f"{path}?{query}")
    body = {
        "iteration_id": state.iteration.pk,
        "image_id": None if is_upload else int(key),
        "upload": key if is_upload else None,
        "status": state.status,
        "message": state.message,
        "tag_name": state.tag_name,
        "probability": state.probability if state.status == saliency.DONE else None,
        "box": list(state.box) if state.box else None,
        "overlay_url": overlay,
    }
    return WhereLookedSerializer(body).data  # type: ignore[no-any-return]


class WhereLookedApi(APIView):
    @extend_schema(
        operation_id="where_looked_retrieve",
        parameters=[WhereLookedTargetSerializer],
        responses={200: WhereLookedSerializer, **errors(400, 403)},
        summary="Where the model looked: the heat map's state",
    )
    def get(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id)
        state = _target(request, project, iteration_id, request.query_params)
        return Response(_body(request, state))

    @extend_schema(
        operation_id="where_looked_compute",
        request=WhereLookedTargetSerializer,
        responses={202: WhereLookedSerializer, **errors(400, 403)},
        summary="Where the model looked: compute the heat map",
        description="Queues the heat map unless it is done, queued or running; a failed one "
        "runs again. Poll the GET until its status is done or failed.",
    )
    def post(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id)
        state = _target(request, project, iteration_id, request.data)
        state = saliency.request_saliency(state.iteration, state.key)
        return Response(_body(request, state), status=status.HTTP_202_ACCEPTED)


class WhereLookedOverlayApi(APIView):
    @extend_schema(
        operation_id="where_looked_overlay",
        parameters=[WhereLookedTargetSerializer],
        responses={
            (200, "image/png"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The heat map, RGBA, of the image's size."
            ),
            **errors(400, 403),
        },
    )
    def get(self, request: Request, project_id: int, iteration_id: int) -> FileResponse:
        project = access_project(request.user, project_id)
        state = _target(request, project, iteration_id, request.query_params)
        response = stream_file(
            saliency.open_overlay(state.iteration, state.key), content_type="image/png"
        )
        response["Cache-Control"] = "private, max-age=3600"
        return response


class ContextRelianceRowSerializer(serializers.Serializer):
    tag = serializers.CharField()
    images = serializers.IntegerField(help_text="Images measured; 0: none could be.")
    score = serializers.FloatField(required=False, help_text="Mean probability of the tag.")
    without_object = serializers.FloatField(required=False)
    without_surroundings = serializers.FloatField(required=False)
    object_drop = serializers.FloatField(required=False)
    surroundings_drop = serializers.FloatField(required=False)
    object_rise = serializers.FloatField(required=False)
    surroundings_rise = serializers.FloatField(required=False)
    predicted = serializers.IntegerField(required=False)
    survives = serializers.FloatField(
        required=False, help_text="Share still predicted with the object masked out."
    )
    flagged = serializers.BooleanField(
        required=False, help_text="The tag seems to rely on the background."
    )

    class Meta:
        ref_name = "ContextRelianceRow"


class ContextRelianceSerializer(serializers.Serializer):
    iteration_id = serializers.IntegerField()
    status = serializers.CharField(allow_blank=True, help_text=_STATUS_HELP)
    message = serializers.CharField(allow_blank=True, help_text="Why it failed, in words.")
    images_per_tag = serializers.IntegerField(help_text="At most this many images a tag.")
    tags = ContextRelianceRowSerializer(many=True, help_text="Once done: one row per tag.")

    class Meta:
        ref_name = "ContextReliance"


def _reliance_body(iteration_id: int, state: dict[str, Any]) -> dict[str, Any]:
    body = {
        "iteration_id": iteration_id,
        "status": state.get("status", ""),
        "message": state.get("message", ""),
        "images_per_tag": context_reliance.PER_TAG,
        "tags": state.get("tags") or [],
    }
    return ContextRelianceSerializer(body).data  # type: ignore[no-any-return]


class ContextRelianceApi(APIView):
    @extend_schema(
        operation_id="context_reliance_retrieve",
        responses={200: ContextRelianceSerializer, **errors()},
        summary="Context reliance of an iteration: how much each tag leans on the background",
    )
    def get(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id)
        iteration = context_reliance.reliance_iteration(project, iteration_id)
        return Response(_reliance_body(iteration.pk, context_reliance.context_state(iteration)))

    @extend_schema(
        operation_id="context_reliance_measure",
        request=None,
        responses={202: ContextRelianceSerializer, **errors()},
        summary="Context reliance of an iteration: measure it",
        description="Queues the measurement unless it is done, queued or running; a failed one "
        "runs again. Poll the GET until its status is done or failed.",
    )
    def post(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id)
        iteration = context_reliance.reliance_iteration(project, iteration_id)
        state = context_reliance.request_context_reliance(iteration)
        return Response(_reliance_body(iteration.pk, state), status=status.HTTP_202_ACCEPTED)
