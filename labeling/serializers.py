"""Output shapes shared by several API endpoints (projects, tags, members, images).

Serializers check shape and types only; every rule lives in `labeling.services`. Endpoint-
specific input shapes are nested in their views (`labeling.api.*`). `Meta.ref_name` gives each
OpenAPI component a unique, stable name.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from labeling.models import Image, Membership, Project, Role, Tag
from project.hosts import absolute_url


class ProjectOutputSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in this project.")

    class Meta:
        model = Project
        ref_name = "Project"
        fields = ["id", "name", "description", "kind", "domain", "created", "role"]

    @extend_schema_field(serializers.ChoiceField(choices=Role.choices, allow_null=True))
    def get_role(self, project: Project) -> str | None:
        # Set by access_project (one project) or annotated by the list query (many).
        role = getattr(project, "current_role", None) or getattr(project, "my_role", None)
        return str(role) if role else None


class TagOutputSerializer(serializers.ModelSerializer):
    image_count = serializers.SerializerMethodField(
        help_text="How many images carry this tag (as an image tag or a box)."
    )

    class Meta:
        model = Tag
        ref_name = "Tag"
        fields = ["id", "name", "description", "kind", "image_count"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_image_count(self, tag: Tag) -> int | None:
        return getattr(tag, "image_count", None)


class MemberUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()

    class Meta:
        ref_name = "MemberUser"


class MembershipOutputSerializer(serializers.ModelSerializer):
    user = MemberUserSerializer()
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        ref_name = "Membership"
        fields = ["id", "user", "role", "created"]


class ImageTagRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()

    class Meta:
        ref_name = "ImageTagRef"


class RegionOutputSerializer(serializers.Serializer):
    """A box in Custom Vision's convention: fractions of the image, top-left origin."""

    id = serializers.IntegerField()
    tag_id = serializers.IntegerField()
    left = serializers.FloatField()
    top = serializers.FloatField()
    width = serializers.FloatField()
    height = serializers.FloatField()

    class Meta:
        ref_name = "Region"


class ImageUrlsSerializer(serializers.Serializer):
    file = serializers.CharField()
    thumbnail = serializers.CharField(
        allow_null=True, help_text="Null until the worker has made it."
    )

    class Meta:
        ref_name = "ImageUrls"


class ImageOutputSerializer(serializers.ModelSerializer):
    """One image. Read its tags and regions from a prefetch (see `images_for_listing`)."""

    tags = serializers.SerializerMethodField()
    regions = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()
    is_small = serializers.BooleanField(
        read_only=True, help_text="Shortest edge under 256 px: upscaled for training."
    )

    class Meta:
        model = Image
        ref_name = "Image"
        fields = [
            "id",
            "width",
            "height",
            "original_name",
            "format",
            "source",
            "created",
            "is_tagged",
            "tags",
            "regions",
            "urls",
            "is_small",
            "version",
        ]

    # Sorted in Python: the prefetch caches are used as they are, so a page costs no extra query.
    @extend_schema_field(ImageTagRefSerializer(many=True))
    def get_tags(self, image: Image) -> list[dict[str, Any]]:
        labels = sorted(image.image_tags.all(), key=lambda label: label.tag_id)
        data = [{"id": label.tag_id, "name": label.tag.name} for label in labels]
        return ImageTagRefSerializer(data, many=True).data

    @extend_schema_field(RegionOutputSerializer(many=True))
    def get_regions(self, image: Image) -> list[dict[str, Any]]:
        return RegionOutputSerializer(image.regions.all(), many=True).data

    @extend_schema_field(ImageUrlsSerializer)
    def get_urls(self, image: Image) -> dict[str, Any]:
        request = self.context.get("request")

        def absolute(url: str) -> str:
            # Only on a host the admin named: a forged Host header is never echoed.
            return absolute_url(request, url) if request is not None else url

        return ImageUrlsSerializer(
            {
                "file": absolute(image.file.url),
                "thumbnail": absolute(image.thumbnail.url) if image.thumbnail else None,
            }
        ).data


class ErrorSerializer(serializers.Serializer):
    """Every error answer: a stable code and a full-sentence message safe to show."""

    code = serializers.CharField()
    message = serializers.CharField()

    class Meta:
        ref_name = "Error"
