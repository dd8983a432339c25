"""Projects, members, tags, images and their labels.

Every write goes through `labeling.services`; these classes hold fields, constraints and
chainable read filters only.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Lower


class Role(models.TextChoices):
    """A member's role in one project. Each role can do everything the roles below it can."""

    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self]


ROLE_RANK: dict[str, int] = {Role.ANNOTATOR: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


class Project(models.Model):
    class Kind(models.TextChoices):
        MULTICLASS = "multiclass", "Classification: one tag per image"
        MULTILABEL = "multilabel", "Classification: several tags per image"
        DETECTION = "detection", "Object detection"

    class Domain(models.TextChoices):
        # The domain picks the backbone (training.ml.backbones): compact is exportable and fastest.
        GENERAL_COMPACT = "general_compact", "General (compact)"
        GENERAL = "general", "General"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MULTICLASS)
    domain = models.CharField(max_length=30, choices=Domain.choices, default=Domain.GENERAL_COMPACT)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_detection(self) -> bool:
        return self.kind == Project.Kind.DETECTION

    @property
    def is_multiclass(self) -> bool:
        return self.kind == Project.Kind.MULTICLASS


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="unique_project_member"),
        ]
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Tag(models.Model):
    class Kind(models.TextChoices):
        REGULAR = "regular", "Regular"
        # "None of these": excludes every other tag on an image, trains the background class.
        NEGATIVE = "negative", "Negative"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.REGULAR)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Creation order is display order: keys 1-9 in the tagging view follow it.
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_tag_name"),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(kind="negative"),
                name="one_negative_tag_per_project",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_negative(self) -> bool:
        return self.kind == Tag.Kind.NEGATIVE


class ImageQuerySet(models.QuerySet["Image"]):
    def training(self) -> ImageQuerySet:
        """Images that are training data (not stored predictions awaiting review)."""
        return self.filter(is_training=True)

    def tagged(self) -> ImageQuerySet:
        return self.filter(is_tagged=True)

    def untagged(self) -> ImageQuerySet:
        return self.filter(is_tagged=False)

    def for_tag(self, tag: Tag | int) -> ImageQuerySet:
        tag_id = tag if isinstance(tag, int) else tag.pk
        return self.filter(
            Exists(ImageTag.objects.filter(image=OuterRef("pk"), tag_id=tag_id))
            | Exists(Region.objects.filter(image=OuterRef("pk"), tag_id=tag_id))
        )

    # Keyset ("seek") paging in gallery order (newest first): both walk the gallery indexes from
    # a known id, so page 600 costs what page 1 costs, unlike OFFSET.
    def older_than(self, image_id: int) -> ImageQuerySet:
        """Images after `image_id` in gallery order (smaller ids), nearest first."""
        return self.filter(pk__lt=image_id).order_by("-pk")

    def newer_than(self, image_id: int) -> ImageQuerySet:
        """Images before `image_id` in gallery order (larger ids), nearest first."""
        return self.filter(pk__gt=image_id).order_by("pk")

    def label_counts(self) -> dict[str, int]:
        """`{"all", "tagged", "untagged"}` counts in one aggregate query."""
        counts = self.aggregate(all=Count("pk"), tagged=Count("pk", filter=Q(is_tagged=True)))
        return {**counts, "untagged": counts["all"] - counts["tagged"]}

    def count_per_tag(self, *, boxes: bool = False) -> dict[int, int]:
        """`{tag_id: how many of these images carry it}` in one grouped query.

        Classification counts image tags; `boxes=True` (detection) counts images with at least
        one box of the tag.
        """
        if boxes:
            rows = (
                self.filter(regions__isnull=False)
                .values_list("regions__tag_id")
                .annotate(n=Count("pk", distinct=True))
            )
        else:
            rows = (
                self.filter(image_tags__isnull=False)
                .values_list("image_tags__tag_id")
                .annotate(n=Count("pk"))
            )
        return dict(rows.order_by())


class Image(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload", "Upload"
        IMPORT = "import", "Import"
        PREDICTION = "prediction", "Prediction"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    # Indexed: the media view finds a requested file's image (and so its project) by name.
    file = models.FileField(upload_to="images/", max_length=300, db_index=True)
    thumbnail = models.FileField(upload_to="thumbnails/", max_length=300, blank=True, db_index=True)
    original_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=10)
    size_bytes = models.PositiveIntegerField()
    # Width and height after EXIF orientation, i.e. as the image is shown and trained on.
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.UPLOAD)
    # False for stored predictions until a reviewer moves them into the training data.
    is_training = models.BooleanField(default=True)
    # Maintained by the tagging services: any tag or region makes an image tagged. Kept on the
    # row so the gallery's tagged/untagged filters and counts are index lookups at 20k+ images.
    is_tagged = models.BooleanField(default=False)
    # Bumped by every label edit; an edit names the version it started from (compare-and-set).
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[ImageQuerySet] = ImageQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "sha256"],
                condition=Q(is_training=True),
                name="unique_training_image_sha256",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "is_training", "-id"], name="image_gallery_idx"),
            models.Index(
                fields=["project", "is_training", "is_tagged", "-id"],
                name="image_gallery_tagged_idx",
            ),
            models.Index(fields=["project", "sha256"], name="image_sha256_idx"),
        ]

    def __str__(self) -> str:
        return self.original_name or f"image {self.pk}"

    @property
    def is_small(self) -> bool:
        return min(self.width, self.height) < settings.LOUPE_SMALL_EDGE_PX


class ImageTag(models.Model):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="image_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="image_tags")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "tag"], name="unique_image_tag"),
        ]
        indexes = [models.Index(fields=["tag", "image"], name="imagetag_tag_image_idx")]

    def __str__(self) -> str:
        return f"{self.tag_id} on image {self.image_id}"


class Region(models.Model):
    """A bounding box in Custom Vision's convention: fractions of the image, top-left origin."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="regions")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="regions")
    left = models.FloatField()
    top = models.FloatField()
    width = models.FloatField()
    height = models.FloatField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # A small tolerance for float rounding at the right and bottom edges.
        constraints = [
            models.CheckConstraint(
                condition=Q(left__gte=0)
                & Q(top__gte=0)
                & Q(width__gt=0)
                & Q(height__gt=0)
                & Q(left__lte=1)
                & Q(top__lte=1)
                & Q(width__lte=1)
                & Q(height__lte=1),
                name="region_inside_unit_square",
            ),
        ]
        indexes = [models.Index(fields=["tag", "image"], name="region_tag_image_idx")]

    def __str__(self) -> str:
        return f"box of tag {self.tag_id} on image {self.image_id}"


class ApiKey(models.Model):
    """An account's key for the Custom Vision APIs (the "API keys" page). Only its SHA-256 is
    stored; the secret is shown once, when it is made or rotated.

    A training key acts as its user, with that user's roles in each project (Custom Vision's
    training key belongs to a resource, ours to an account). A prediction key calls the
    prediction API of every project where its user may (predictions.services.keys). Projects'
    own prediction keys are `predictions.PredictionKey`.
    """

    class Kind(models.TextChoices):
        TRAINING = "training", "Training"
        PREDICTION = "prediction", "Prediction"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=100)
    # The first characters of the key, shown in the list so its owner can tell keys apart.
    prefix = models.CharField(max_length=12)
    # 256-bit random secrets: an unsalted SHA-256 cannot be reversed, and the per-request
    # lookup is one indexed equality match.
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    rotated = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["user", "-created"], name="apikey_user_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked is not None


class SavedFilter(models.Model):
    """A gallery filter kept under a name: the gallery's status and tags, what an export takes.

    The images it names are the training images of any of `tag_ids` (none: every image) within
    the gallery filter `status`, as `labeling.services.datasets.ExportSelection` reads them; the
    gallery saves its own filter (a status, or one tag). Tag ids are plain values, not a relation,
    so deleting a tag leaves the filter in place: the tag drops out when the filter is resolved,
    and the filter says so (labeling.services.saved_filters).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="saved_filters")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=40, default="all")
    tag_ids = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # "Cats" and "cats" would be two links nobody can tell apart in the list.
            models.UniqueConstraint(Lower("name"), "project", name="unique_saved_filter_name_ci"),
        ]

    def __str__(self) -> str:
        return self.name
