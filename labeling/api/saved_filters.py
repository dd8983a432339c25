"""REST API for saved gallery filters: list, save, read and delete a project's named filters.

GET/POST /api/projects/<id>/saved-filters/, GET/DELETE .../saved-filters/<filter id>/. Members
list and save them (annotator and up, as in the gallery); the creator or an admin deletes one.
An export takes one by id (`saved_filter_id`, labeling.api.exports). The rules live in
labeling.services.saved_filters.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project
from labeling.api.common import errors
from labeling.models import SavedFilter
from labeling.services.saved_filters import (
    delete_filter,
    get_saved_filter,
    resolve_filter,
    save_filter,
)
from project.ids import id_list_field


class SavedFilterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    filter = serializers.CharField(
        help_text="The gallery filter: all, tagged, untagged (or one another app adds)."
    )
    tag_ids = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Only the images of any of these tags (none: every image); tags deleted "
        "since the filter was saved are left out.",
    )
    deleted_tag_ids = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Tags the filter was saved with that have been deleted since.",
    )
    created_by = serializers.CharField(allow_null=True, help_text="The saver's username.")
    created = serializers.DateTimeField()

    class Meta:
        ref_name = "SavedFilter"


def _body(saved: SavedFilter) -> dict[str, Any]:
    resolved = resolve_filter(saved)
    return {
        "id": saved.pk,
        "name": saved.name,
        "filter": saved.status,
        "tag_ids": list(resolved.selection.tag_ids),
        "deleted_tag_ids": list(resolved.dropped_tag_ids),
        "created_by": saved.created_by.get_username() if saved.created_by else None,
        "created": saved.created,
    }


class SavedFilterListApi(APIView):
    class InputSerializer(serializers.Serializer):
        # Blank and long names pass the shape check: the service refuses them with 422 and a
        # sentence, as the gallery's form does.
        name = serializers.CharField(allow_blank=True, trim_whitespace=False)
        filter = serializers.CharField(
            required=False,
            default="all",
            help_text="A gallery filter: all, tagged, untagged (or one another app adds).",
        )
        tag_ids = id_list_field(
            required=False, default=list, help_text="Only the images of any of these tags."
        )

        class Meta:
            ref_name = "SavedFilterCreate"

    @extend_schema(
        operation_id="saved_filters_list",
        responses={200: SavedFilterSerializer(many=True), **errors()},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        filters = project.saved_filters.select_related("created_by", "project")
        return Response(SavedFilterSerializer([_body(f) for f in filters], many=True).data)

    @extend_schema(
        operation_id="saved_filters_create",
        request=InputSerializer,
        responses={201: SavedFilterSerializer, **errors(400, 422)},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        saved = save_filter(
            project=project,
            name=data.validated_data["name"],
            by=request.user,
            status=data.validated_data["filter"],
            tag_ids=data.validated_data["tag_ids"],
        )
        return Response(SavedFilterSerializer(_body(saved)).data, status=status.HTTP_201_CREATED)


class SavedFilterDetailApi(APIView):
    @extend_schema(
        operation_id="saved_filters_retrieve",
        responses={200: SavedFilterSerializer, **errors()},
    )
    def get(self, request: Request, project_id: int, saved_filter_id: int) -> Response:
        project = access_project(request.user, project_id)
        return Response(
            SavedFilterSerializer(_body(get_saved_filter(project, saved_filter_id))).data
        )

    @extend_schema(operation_id="saved_filters_destroy", responses={204: None, **errors(403)})
    def delete(self, request: Request, project_id: int, saved_filter_id: int) -> Response:
        project = access_project(request.user, project_id)
        delete_filter(saved_filter=get_saved_filter(project, saved_filter_id), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
