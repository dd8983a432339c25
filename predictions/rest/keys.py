"""Prediction keys (admins): predictions.services.keys; a new secret is in the answer that made it
and never again.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import (
    PageQuerySerializer,
    errors,
    keyset_page,
    page_serializer,
    paged_body,
)
from labeling.models import Role
from predictions.services.keys import IssuedKey, create_key, revoke_key, rotate_key
from project.errors import NotFound
from project.ids import parse_optional_id


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
