"""REST API of iterations: list, get, train, cancel, rename, publish, default, threshold, delete.

The same service calls as the training pages (training.views), with the same roles: every member
reads, admins act (the services check it too). Ids in paths are looked up through the project,
so another project's iteration is 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
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
from labeling.models import Project, Role
from project.errors import NotFound
from project.ids import parse_optional_id
from training.models import Iteration
from training.services import publishing
from training.services.figures import headline
from training.services.iterations import cancel_iteration, start_iteration
from training.services.progress import iteration_state


def get_iteration(project: Project, iteration_id: int | str) -> Iteration:
    """The project's iteration `iteration_id`, or NotFound (an id past 64 bits too)."""
    pk = parse_optional_id(iteration_id)
    iteration = project.iterations.filter(pk=pk).first() if pk else None
    if iteration is None:
        raise NotFound("This iteration does not exist in this project.")
    iteration.project = project  # the role cache of access_project serves the services
    return iteration


class ProgressSerializer(serializers.Serializer):
    fraction = serializers.FloatField(help_text="0..1 of the run done.")
    phase = serializers.CharField(help_text="What the worker is doing, in words.")
    elapsed_s = serializers.FloatField()
    epoch = serializers.IntegerField(allow_null=True)
    epochs = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "IterationProgress"


class HeadlineSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    map = serializers.FloatField(allow_null=True, help_text="mAP (mAP@0.5 for detection).")

    class Meta:
        ref_name = "IterationHeadline"


class IterationOutputSerializer(serializers.ModelSerializer):
    published_name = serializers.SerializerMethodField(
        help_text="The name the prediction API calls it by; null when not published."
    )
    progress = serializers.SerializerMethodField()
    figures = serializers.SerializerMethodField(
        help_text="Precision and recall at the saved threshold, and mAP; null until completed."
    )

    class Meta:
        model = Iteration
        ref_name = "Iteration"
        fields = [
            "id",
            "number",
            "name",
            "status",
            "failure_reason",
            "failure_message",
            "training_type",
            "budget_s",
            "backbone",
            "is_multilabel",
            "is_forced",
            "image_count",
            "published_name",
            "is_default",
            "suggested_threshold",
            "created",
            "started",
            "finished",
            "progress",
            "figures",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_published_name(self, iteration: Iteration) -> str | None:
        return iteration.published_name or None

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, iteration: Iteration) -> dict[str, Any]:
        return ProgressSerializer(iteration_state(iteration)).data

    @extend_schema_field(HeadlineSerializer(allow_null=True))
    def get_figures(self, iteration: Iteration) -> dict[str, Any] | None:
        figures = headline(iteration)
        return HeadlineSerializer(figures).data if figures is not None else None


def _answer(iteration: Iteration, code: int = status.HTTP_200_OK) -> Response:
    iteration.refresh_from_db()
    return Response(IterationOutputSerializer(iteration).data, status=code)


IterationPage = page_serializer("IterationPage", IterationOutputSerializer)


class IterationListApi(APIView):
    class TrainSerializer(serializers.Serializer):
        training_type = serializers.ChoiceField(
            choices=Iteration.TrainingType.choices, default=Iteration.TrainingType.QUICK
        )
        budget_s = serializers.IntegerField(
            required=False,
            default=0,
            min_value=0,
            help_text="Advanced training's time budget in seconds (LOUPE_TRAIN_MIN_BUDGET_S to "
            "LOUPE_TRAIN_MAX_BUDGET_S); quick training ignores it.",
        )
        force = serializers.BooleanField(
            required=False, default=False, help_text="Train even if nothing changed."
        )

        class Meta:
            ref_name = "TrainRequest"

    @extend_schema(
        operation_id="iterations_list",
        parameters=[PageQuerySerializer],
        responses={200: IterationPage, **errors(400)},
        description="The project's iterations, newest first.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id)
        query = PageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = project.iterations.all()
        page = keyset_page(
            rows, after=query.validated_data.get("after"), size=query.validated_data["page_size"]
        )
        results = IterationOutputSerializer(page.items, many=True).data
        return Response(paged_body(request, page, count=rows.count(), results=results))

    @extend_schema(
        operation_id="iterations_train",
        request=TrainSerializer,
        responses={201: IterationOutputSerializer, **errors(400, 403, 422)},
        description="Start a training (admins): a snapshot of the labels goes to a worker. "
        "Poll the iteration until its status is completed or failed. 422 when the data "
        "cannot make a model, nothing changed since the last iteration (unless `force`), or "
        "another training is queued or running.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        data = self.TrainSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        iteration = start_iteration(project=project, by=request.user, **data.validated_data)
        return _answer(iteration, status.HTTP_201_CREATED)


class IterationDetailApi(APIView):
    class RenameSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=publishing.MAX_NAME_LENGTH)

        class Meta:
            ref_name = "IterationRename"

    @extend_schema(
        operation_id="iterations_retrieve", responses={200: IterationOutputSerializer, **errors()}
    )
    def get(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id)
        return _answer(get_iteration(project, iteration_id))

    @extend_schema(
        operation_id="iterations_rename",
        request=RenameSerializer,
        responses={200: IterationOutputSerializer, **errors(400, 403, 422)},
    )
    def patch(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        iteration = get_iteration(project, iteration_id)
        data = self.RenameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        publishing.rename_iteration(
            iteration=iteration, name=data.validated_data["name"], by=request.user
        )
        return _answer(iteration)

    @extend_schema(
        operation_id="iterations_destroy",
        responses={204: None, **errors(403, 422)},
        description="Delete an iteration with its scores and model (admins); refused while "
        "it is published or training.",
    )
    def delete(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        publishing.delete_iteration(iteration=get_iteration(project, iteration_id), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class IterationCancelApi(APIView):
    @extend_schema(
        operation_id="iterations_cancel",
        request=None,
        responses={200: IterationOutputSerializer, **errors(403, 422)},
        description="Stop a queued or training iteration (admins): it ends failed with the "
        "reason `cancelled`; the worker stops at its next progress report.",
    )
    def post(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        iteration = cancel_iteration(
            iteration=get_iteration(project, iteration_id), by=request.user
        )
        return _answer(iteration)


class IterationPublishApi(APIView):
    class PublishSerializer(serializers.Serializer):
        name = serializers.CharField(
            max_length=publishing.MAX_NAME_LENGTH,
            help_text="Letters, digits, - and _: it becomes part of the prediction URL.",
        )

        class Meta:
            ref_name = "IterationPublish"

    @extend_schema(
        operation_id="iterations_publish",
        request=PublishSerializer,
        responses={200: IterationOutputSerializer, **errors(400, 403, 422)},
        description="Publish a completed iteration under a name (admins); the prediction API "
        "then answers at /api/predict/<project_id>/classify|detect/iterations/<name>/image.",
    )
    def post(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        iteration = get_iteration(project, iteration_id)
        data = self.PublishSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        publishing.publish_iteration(
            iteration=iteration, name=data.validated_data["name"], by=request.user
        )
        return _answer(iteration)

    @extend_schema(
        operation_id="iterations_unpublish",
        responses={200: IterationOutputSerializer, **errors(403, 422)},
    )
    def delete(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        iteration = get_iteration(project, iteration_id)
        publishing.unpublish_iteration(iteration=iteration, by=request.user)
        return _answer(iteration)


class IterationDefaultApi(APIView):
    @extend_schema(
        operation_id="iterations_make_default",
        request=None,
        responses={200: IterationOutputSerializer, **errors(403, 422)},
        description="Make a completed iteration the project's default (admins): the one the "
        "Performance and Predictions tabs, quick test and suggestions use.",
    )
    def post(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        iteration = get_iteration(project, iteration_id)
        publishing.make_default_iteration(iteration=iteration, by=request.user)
        return _answer(iteration)


class IterationThresholdApi(APIView):
    class ThresholdSerializer(serializers.Serializer):
        threshold = serializers.FloatField(min_value=0.0, max_value=1.0)

        class Meta:
            ref_name = "IterationThreshold"

    @extend_schema(
        operation_id="iterations_set_threshold",
        request=ThresholdSerializer,
        responses={200: IterationOutputSerializer, **errors(400, 403, 422)},
        description="Save the probability threshold the iteration is summed up at (admins), "
        "as the performance page's slider does.",
    )
    def put(self, request: Request, project_id: int, iteration_id: int) -> Response:
        project = access_project(request.user, project_id, min_role=Role.ADMIN)
        iteration = get_iteration(project, iteration_id)
        data = self.ThresholdSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        publishing.set_suggested_threshold(
            iteration=iteration, threshold=data.validated_data["threshold"], by=request.user
        )
        return _answer(iteration)
