"""Iterations: one training run of a project, the data snapshot it trained on and its scores.

Every write goes through `training.services`; these classes hold fields, constraints and read
filters only.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q


def iteration_folder(iteration_id: int) -> str:
    """The folder of the files named by an iteration's id: its model (artifact_path), serving
    file, training embeddings and model exports (export_path)."""
    return f"iterations/{iteration_id}"


def artifact_path(iteration: Iteration, filename: str) -> str:
    # A fixed name per iteration: a re-run overwrites its own file, never another iteration's.
    return f"{iteration_folder(iteration.pk)}/model.pt"


class IterationQuerySet(models.QuerySet["Iteration"]):
    def active(self) -> IterationQuerySet:
        """Queued or training: at most one per project (a database constraint holds it)."""
        return self.filter(status__in=Iteration.ACTIVE_STATUSES)

    def completed(self) -> IterationQuerySet:
        return self.filter(status=Iteration.Status.COMPLETED)

    def published(self) -> IterationQuerySet:
        return self.exclude(published_name="")


class Iteration(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        TRAINING = "training", "Training"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    class TrainingType(models.TextChoices):
        QUICK = "quick", "Quick"
        ADVANCED = "advanced", "Advanced"

    class FailureReason(models.TextChoices):
        DATASET_CORRUPT = "dataset_corrupt", "Dataset corrupt"
        TRAINING_DIVERGED = "training_diverged", "Training diverged"
        BUDGET_NOT_ENOUGH = "budget_not_enough", "Budget not enough"
        WORKER_LOST = "worker_lost", "Worker lost"
        UNEXPECTED = "unexpected", "Unexpected error"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES: ClassVar[tuple[str, str]] = (Status.QUEUED, Status.TRAINING)

    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="iterations"
    )
    number = models.PositiveIntegerField()
    # "Iteration 3" until an admin renames it; the publish name is separate (the prediction API's).
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.CharField(max_length=30, choices=FailureReason.choices, blank=True)
    failure_message = models.TextField(blank=True)
    training_type = models.CharField(
        max_length=20, choices=TrainingType.choices, default=TrainingType.QUICK
    )
    # Advanced training's time budget; quick training has none (0).
    budget_s = models.PositiveIntegerField(default=0)
    backbone = models.CharField(max_length=50)
    is_multilabel = models.BooleanField(default=False)
    progress_fraction = models.FloatField(default=0.0)
    progress_phase = models.CharField(max_length=200, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    suggested_threshold = models.FloatField(default=0.5)
    published_name = models.CharField(max_length=100, blank=True)
    is_default = models.BooleanField(default=False)
    is_forced = models.BooleanField(default=False)
    # sha256 over the (image content hash, tag names) pairs: "nothing changed" compares it.
    snapshot_hash = models.CharField(max_length=64, blank=True)
    image_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    artifact = models.FileField(upload_to=artifact_path, max_length=300, blank=True)
    # The worker holding a training iteration renews this lease; the sweep fails or re-queues an
    # iteration whose lease ran out (its worker died without a word).
    lease_expires = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)

    objects: ClassVar[IterationQuerySet] = IterationQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_iteration_number"),
            models.UniqueConstraint(
                fields=["project", "published_name"],
                condition=~Q(published_name=""),
                name="unique_iteration_published_name",
            ),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(is_default=True),
                name="one_default_iteration_per_project",
            ),
            # One training at a time per project, even when two admins press Train together.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "training"]),
                name="one_active_iteration_per_project",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "lease_expires"], name="iteration_lease_idx"),
        ]

    def __str__(self) -> str:
        return self.name or f"Iteration {self.number}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status == self.Status.COMPLETED

    @property
    def is_published(self) -> bool:
        return bool(self.published_name)

    @property
    def progress_percent(self) -> int:
        return round(100 * self.progress_fraction)

    @property
    def saliency_folder(self) -> str:
        """Its "where the model looked" maps and kept quick-test uploads. The creation time is
        part of the name: a database may reuse a deleted iteration's id (SQLite does), and the
        new one must not see the old maps."""
        return f"saliency/{self.pk}-{int(self.created.timestamp())}"

    def stored_folders(self) -> tuple[str, ...]:
        """Every folder of stored files it owns, for deleting it (or its project) without
        leftovers: iteration_folder and saliency_folder."""
        return (iteration_folder(self.pk), self.saliency_folder)


class IterationTag(models.Model):
    """A regular tag as the iteration saw it; `index` is its column in targets and scores."""

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="tags")
    tag = models.ForeignKey(
        "labeling.Tag", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=100)
    index = models.PositiveSmallIntegerField()
    image_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["iteration", "index"]
        constraints = [
            models.UniqueConstraint(fields=["iteration", "index"], name="unique_iteration_tag"),
        ]

    def __str__(self) -> str:
        return self.name


class IterationImage(models.Model):
    """One training image of the snapshot, with its labels as tag indexes at training time."""

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="images")
    image = models.ForeignKey(
        "labeling.Image", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sha256 = models.CharField(max_length=64)
    # The stored file's name: the worker opens it through Django storage, never a local path.
    file_name = models.CharField(max_length=300)
    original_name = models.CharField(max_length=255, blank=True)
    # Indexes into the iteration's IterationTag rows; [] with is_negative for a Negative image.
    labels = models.JSONField(default=list)
    is_negative = models.BooleanField(default=False)
    # Detection only: the boxes at training time, [tag index, left, top, width, height] as
    # fractions of the image; [] for classification and for a detection negative ("no objects").
    boxes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["iteration", "id"]

    def __str__(self) -> str:
        return self.original_name or self.sha256


class IterationScore(models.Model):
    """Out-of-fold (quick) or held-out (advanced) probabilities of one training image.

    One row per scored image with a float list in tag-index order: the performance page reads
    them all in one query (5,000 images x 10 tags is ~5,000 short rows).
    """

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="scores")
    iteration_image = models.OneToOneField(
        IterationImage, on_delete=models.CASCADE, related_name="score"
    )
    # The cross-validation fold that scored the image; -1 for an advanced hold-out image.
    fold = models.SmallIntegerField(default=-1)
    scores = models.JSONField(default=list)
    # Detection only: the held-out image's detections after non-maximum suppression,
    # [tag index, probability, left, top, width, height] highest first; `scores` then holds
    # each tag's best probability. The performance page's sliders recompute from these.
    detections = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["iteration", "iteration_image"]

    def __str__(self) -> str:
        return f"scores of {self.iteration_image_id}"


def export_path(export: ModelExport, filename: str) -> str:
    # One file per export row: a re-export replaces its own zip, never another's. Inside the
    # iteration's folder, not beside the dataset exports' `exports/<project id>/` (ids collide).
    return f"{iteration_folder(export.iteration_id)}/exports/{export.pk}/{filename}"


class ModelExport(models.Model):
    """One export of an iteration's model to a platform (ONNX, TorchScript): a worker job.

    Rules and the job's life (lease, sweep, every job ends) live in
    training.services.model_export.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        EXPORTING = "exporting", "Exporting"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Platform(models.TextChoices):
        ONNX = "ONNX", "ONNX"
        TORCHSCRIPT = "TorchScript", "TorchScript"

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="exports")
    platform = models.CharField(max_length=20, choices=Platform.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress_fraction = models.FloatField(default=0.0)
    progress_phase = models.CharField(max_length=200, blank=True)
    failure_reason = models.CharField(max_length=30, blank=True)
    failure_message = models.TextField(blank=True)
    file = models.FileField(upload_to=export_path, max_length=300, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    # The threshold the manifest carries: a later change on the performance page makes the
    # export stale, and exporting again rebuilds it.
    threshold = models.FloatField(default=0.5)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["iteration", "platform"]
        constraints = [
            models.UniqueConstraint(
                fields=["iteration", "platform"], name="one_export_per_iteration_platform"
            ),
        ]
        indexes = [models.Index(fields=["status", "lease_expires"], name="export_lease_idx")]

    def __str__(self) -> str:
        return f"{self.platform} export of {self.iteration_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def progress_percent(self) -> int:
        return round(100 * self.progress_fraction)


class HealthReport(models.Model):
    """The latest dataset health check of a project (training.services.health), one per project.

    `fingerprint` names the data it was computed from (images, label versions, latest
    iteration): when the project's current fingerprint differs, the report is stale and a page
    that shows it queues a fresh check.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.OneToOneField(
        "labeling.Project", on_delete=models.CASCADE, related_name="health_report"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    fingerprint = models.CharField(max_length=64, blank=True)
    # [{key, title, status, message, image_ids}] in the page's order (training.ml.health).
    results = models.JSONField(default=list, blank=True)
    failure_message = models.TextField(blank=True)
    image_count = models.PositiveIntegerField(default=0)
    embedded_count = models.PositiveIntegerField(default=0)
    duration_s = models.FloatField(default=0.0)
    requested = models.DateTimeField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"health of project {self.project_id}: {self.status}"


class KeptLabel(models.Model):
    """A reviewer kept an image's label against a "possible mislabel" suggestion: the image is
    not flagged again for that label (`label_key`, training.services.label_errors)."""

    image = models.ForeignKey("labeling.Image", on_delete=models.CASCADE, related_name="+")
    label_key = models.CharField(max_length=100)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "label_key"], name="unique_kept_label"),
        ]

    def __str__(self) -> str:
        return f"{self.label_key} kept on image {self.image_id}"


class EmbeddingMap(models.Model):
    """The 2-D map of a project's images (training.services.embedding_map), one per project.

    `fingerprint` names the image set and backbone it was laid out from; a page that reads a map
    whose fingerprint differs from the project's current one queues a new layout. The points are
    `{"ids": [...], "xy": [[x, y], ...]}` in [-1, 1]; labels are not stored (they change every
    minute while people tag) but read when the map is shown.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.OneToOneField(
        "labeling.Project", on_delete=models.CASCADE, related_name="embedding_map"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    fingerprint = models.CharField(max_length=64, blank=True)
    points = models.JSONField(default=dict, blank=True)
    failure_message = models.TextField(blank=True)
    image_count = models.PositiveIntegerField(default=0)
    duration_s = models.FloatField(default=0.0)
    requested = models.DateTimeField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"embedding map of project {self.project_id}: {self.status}"
