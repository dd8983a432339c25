"""REST API for projects, their tags and their members.

Every view looks its project up through `access_project` (404 for non-members, 403 for a role
too low) and calls one service; the nested serializers check shape only.
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery, Value
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.access import access_project, require_project_creator, visible_projects
from labeling.api.common import errors
from labeling.models import Membership, Project, Role, Tag
from labeling.serializers import (
    MembershipOutputSerializer,
    ProjectOutputSerializer,
    TagOutputSerializer,
)
from labeling.services.projects import (
    add_member,
    create_project,
    create_tag,
    delete_project,
    delete_tag,
    get_membership,
    get_tag,
    remove_member,
    set_member_role,
    tags_with_image_counts,
    update_project,
    update_tag,
)

# --- Projects --------------------------------------------------------------------------------


class ProjectListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        kind = serializers.ChoiceField(choices=Project.Kind.choices)
        domain = serializers.ChoiceField(
            choices=Project.Domain.choices, default=Project.Domain.GENERAL_COMPACT
        )

        class Meta:
            ref_name = "ProjectCreate"

    @extend_schema(
        operation_id="projects_list",
        responses={200: ProjectOutputSerializer(many=True), **errors(in_project=False)},
    )
    def get(self, request: Request) -> Response:
        projects = visible_projects(request.user)
        if request.user.is_superuser:
            projects = projects.annotate(my_role=Value(Role.ADMIN.value))
        else:
            projects = projects.annotate(
                my_role=Subquery(
                    Membership.objects.filter(project=OuterRef("pk"), user=request.user).values(
                        "role"
                    )[:1]
                )
            )
        projects = projects.order_by("-created", "-id")
        return Response(ProjectOutputSerializer(projects, many=True).data)

    @extend_schema(
        operation_id="projects_create",
        request=InputSerializer,
        responses={201: ProjectOutputSerializer, **errors(400, 403, 422, in_project=False)},
    )
    def post(self, request: Request) -> Response:
        # Before the body is read: a caller who may not create projects learns that, not a 400.
        require_project_creator(request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = create_project(by=request.user, **data.validated_data)
        project.current_role = Role.ADMIN
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        # The kind is fixed once a project exists: its labels depend on it.
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)
        domain = serializers.ChoiceField(choices=Project.Domain.choices, required=False)

        class Meta:
            ref_name = "ProjectUpdate"

    @extend_schema(
        operation_id="projects_retrieve", responses={200: ProjectOutputSerializer, **errors()}
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        return Response(ProjectOutputSerializer(project).data)

    @extend_schema(
        operation_id="projects_update",
        request=InputSerializer,
        responses={200: ProjectOutputSerializer, **errors(400, 403, 422)},
    )
    def patch(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = update_project(project=project, by=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data)

    @extend_schema(operation_id="projects_destroy", responses={204: None, **errors(403)})
    def delete(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        delete_project(project=project, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Tags ------------------------------------------------------------------------------------


class TagListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        kind = serializers.ChoiceField(choices=Tag.Kind.choices, default=Tag.Kind.REGULAR)
        description = serializers.CharField(
            max_length=500, required=False, allow_blank=True, default=""
        )

        class Meta:
            ref_name = "TagCreate"

    @extend_schema(
        operation_id="tags_list", responses={200: TagOutputSerializer(many=True), **errors()}
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        return Response(TagOutputSerializer(tags_with_image_counts(project), many=True).data)

    @extend_schema(
        operation_id="tags_create",
        request=InputSerializer,
        responses={201: TagOutputSerializer, **errors(400, 403, 422)},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tag = create_tag(project=project, by=request.user, **data.validated_data)
        tag.image_count = 0
        return Response(TagOutputSerializer(tag).data, status=status.HTTP_201_CREATED)


class TagDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        description = serializers.CharField(max_length=500, required=False, allow_blank=True)

        class Meta:
            ref_name = "TagUpdate"

    @extend_schema(operation_id="tags_retrieve", responses={200: TagOutputSerializer, **errors()})
    def get(self, request: Request, project_id: int, tag_id: int) -> Response:
        project = access_project(request.user, project_id)
        tag = tags_with_image_counts(project).get(pk=get_tag(project, tag_id).pk)
        return Response(TagOutputSerializer(tag).data)

    @extend_schema(
        operation_id="tags_update",
        request=InputSerializer,
        responses={200: TagOutputSerializer, **errors(400, 403, 422)},
    )
    def patch(self, request: Request, project_id: int, tag_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        tag = get_tag(project, tag_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        update_tag(tag=tag, by=request.user, **data.validated_data)
        return Response(TagOutputSerializer(tags_with_image_counts(project).get(pk=tag.pk)).data)

    @extend_schema(operation_id="tags_destroy", responses={204: None, **errors(403)})
    def delete(self, request: Request, project_id: int, tag_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        delete_tag(tag=get_tag(project, tag_id), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Members ---------------------------------------------------------------------------------


class MemberListApi(APIView):
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Role.choices)
        password = serializers.CharField(
            required=False,
            allow_blank=True,
            write_only=True,
            style={"input_type": "password"},
            help_text="Creates the account when no user has this name.",
        )

        class Meta:
            ref_name = "MemberAdd"

    @extend_schema(
        operation_id="members_list",
        responses={200: MembershipOutputSerializer(many=True), **errors()},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        members = project.memberships.select_related("user").order_by("user__username")
        return Response(MembershipOutputSerializer(members, many=True).data)

    @extend_schema(
        operation_id="members_create",
        request=InputSerializer,
        responses={201: MembershipOutputSerializer, **errors(400, 403, 422)},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = add_member(project=project, by=request.user, **data.validated_data)
        return Response(MembershipOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices)

        class Meta:
            ref_name = "MemberUpdate"

    @extend_schema(
        operation_id="members_update",
        request=InputSerializer,
        responses={200: MembershipOutputSerializer, **errors(400, 403, 422)},
    )
    def patch(self, request: Request, project_id: int, membership_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        membership = get_membership(project, membership_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = set_member_role(
            membership=membership, by=request.user, role=data.validated_data["role"]
        )
        return Response(MembershipOutputSerializer(membership).data)

    @extend_schema(operation_id="members_destroy", responses={204: None, **errors(403, 422)})
    def delete(self, request: Request, project_id: int, membership_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        remove_member(membership=get_membership(project, membership_id), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
