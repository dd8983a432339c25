"""The embedding map page, the map's data (native API) and its "tag the selection" action.

Views parse, call one service and answer; the rules are in training.services.embedding_map and,
for tagging, in labeling.services.tagging (the gallery's own bulk service).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project, has_role
from labeling.api.common import errors
from labeling.forms import BulkActionForm
from labeling.models import Role
from labeling.services.tagging import add_tags_to_images
from project.errors import LabelRuleError, LoupeError
from training.services.embedding_map import map_payload, request_map


@require_GET
@login_required
def embedding_map(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    context = {
        "project": project,
        "tags": list(project.tags.all()),
        "can_tag": not project.is_detection and has_role(request.user, project, Role.ANNOTATOR),
    }
    return TemplateResponse(request, "training/map.html", context)


@require_POST
@login_required
def embedding_map_refresh(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    request_map(project)
    return redirect("training:embedding-map", project.id)


@require_POST
@login_required
def embedding_map_tag(request: HttpRequest, project_id: int) -> HttpResponse:
    """Tag the lasso's images through the gallery's bulk service; JSON for the page's script,
    POST/redirect/GET for a plain form."""
    project = access_project(request.user, project_id)
    data = request.POST.copy()
    data["action"] = "tag"  # the map only tags; untag and delete stay in the gallery
    form = BulkActionForm(data, project=project)
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        if not form.is_valid():
            errors_ = [e for field in form.errors.values() for e in field]
            return _answer(request, wants_json, project.id, "", errors_[0], 422)
        tag = form.cleaned_data["tag"]
        if project.is_detection:
            raise LabelRuleError("A detection project's images are tagged by their boxes.")
        count = add_tags_to_images(
            project=project, image_ids=form.cleaned_data["image_ids"], tags=[tag], by=request.user
        )
    except LoupeError as err:
        if not wants_json and err.http_status in (403, 404):
            raise
        return _answer(request, wants_json, project.id, "", err.message, err.http_status)
    notice = f"Tagged {count} image{'s' if count != 1 else ''} “{tag.name}”."
    return _answer(request, wants_json, project.id, notice, "", 200)


def _answer(
    request: HttpRequest, wants_json: bool, project_id: int, notice: str, error: str, status: int
) -> HttpResponse:
    if wants_json:
        return JsonResponse({"notice": notice, "error": error}, status=status)
    (messages.error if error else messages.success)(request, error or notice)
    return redirect("training:embedding-map", project_id)


class MapPointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    x = serializers.FloatField(help_text="-1 to 1")
    y = serializers.FloatField(help_text="-1 to 1")
    tags = serializers.ListField(child=serializers.IntegerField())
    mispredicted = serializers.BooleanField(help_text="by the latest completed iteration")
    suggested = serializers.BooleanField(help_text="has a suggested tag")
    thumb = serializers.CharField(allow_blank=True)


class MapTagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class EmbeddingMapApi(APIView):
    class EmbeddingMapSerializer(serializers.Serializer):
        status = serializers.CharField(help_text="queued, running, done or failed")
        failure_message = serializers.CharField(allow_blank=True)
        laid_out = serializers.DateTimeField(allow_null=True)
        image_count = serializers.IntegerField()
        duration_s = serializers.FloatField()
        tags = MapTagSerializer(many=True)
        points = MapPointSerializer(many=True)

    @extend_schema(
        responses={200: EmbeddingMapSerializer, **errors()},
        summary="The project's embedding map: every training image placed in 2-D by similarity",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        return Response(map_payload(project, request.user))
