"""Prediction keys, stored predictions with their ranking columns, and suggested tags.

Every write goes through `predictions.services`; these classes hold fields, constraints, indexes
and chainable read filters only.

Ranking at 100,000+ stored predictions (Predictions tab) reads only indexes:
- "Most gain": the open predictions of one iteration by falling uncertainty
  (prediction_gain_idx), the top few hundred only; diversity is applied to those in Python.
- "Newest": open predictions of one iteration by falling id (prediction_newest_idx).
- "Lowest/Highest probability for tag X": PredictionScore rows of (iteration, tag, is_open) by
  probability (prediction_score_rank_idx); `is_open` is copied from the prediction's status
  so the sort never joins to filter.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from django.conf import settings
from django.db import models


class PredictionKey(models.Model):
    """A per-project secret for the prediction API. Only its SHA-256 is stored.

    Keys are 256-bit random tokens, so a plain (unsalted, fast) hash is enough: nobody can
    brute-force the preimage, and the per-request lookup is one indexed equality match.
    """

    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="prediction_keys"
    )
    name = models.CharField(max_length=100)
    # The first characters of the key, shown in the list so an admin can tell keys apart.
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    rotated = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked is not None


class PredictionQuerySet(models.QuerySet["Prediction"]):
    def open(self) -> PredictionQuerySet:
        """Awaiting a reviewer: not yet moved into training data nor dismissed."""
        return self.filter(status=Prediction.Status.OPEN)

    def of_iteration(self, iteration_id: int) -> PredictionQuerySet:
        return self.filter(iteration_id=iteration_id)

    def most_uncertain(self) -> PredictionQuerySet:
        return self.order_by("-uncertainty", "-id")

    def newest(self) -> PredictionQuerySet:
        return self.order_by("-id")


class Prediction(models.Model):
    """A stored prediction: its image (source=prediction, not training data until a reviewer
    saves it), the iteration that made it, the results as the API returned them, and the
    ranking columns computed once at prediction time."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PROMOTED = "promoted", "Moved into training data"
        DISMISSED = "dismissed", "Dismissed"

    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="predictions"
    )
    iteration = models.ForeignKey(
        "training.Iteration", on_delete=models.CASCADE, related_name="predictions"
    )
    image = models.OneToOneField(
        "labeling.Image", on_delete=models.CASCADE, related_name="prediction"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    # The API's `predictions` list: [{"tagId", "tagName", "probability"[, "boundingBox"]}].
    results = models.JSONField(default=list)
    # The pooled backbone embedding, float16 little-endian: 3.7 kB for lite0-levels' 1,904 values.
    embedding = models.BinaryField(blank=True, default=b"")
    uncertainty = models.FloatField(default=0.0)
    # Detection: the share of boxes the model disagrees with itself about under a horizontal
    # flip (training.ml.uncertainty.flip_disagreement), part of `uncertainty`; None when not
    # measured (classification, or stored before this was measured).
    flip_disagreement = models.FloatField(null=True, blank=True)
    top_tag = models.ForeignKey(
        "labeling.Tag", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    top_probability = models.FloatField(default=0.0)
    # Custom Vision's `application` query parameter: which client sent the image.
    application = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed = models.DateTimeField(null=True, blank=True)
    # Set when the reviewer first opens it: the predicted labels were written onto the image.
    is_prefilled = models.BooleanField(default=False)

    objects: ClassVar[PredictionQuerySet] = PredictionQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["iteration", "status", "-uncertainty", "-id"], name="prediction_gain_idx"
            ),
            models.Index(fields=["iteration", "status", "-id"], name="prediction_newest_idx"),
            models.Index(fields=["project", "status", "-id"], name="prediction_project_idx"),
        ]

    def __str__(self) -> str:
        return f"prediction {self.pk} of image {self.image_id}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    def embedding_vector(self) -> np.ndarray:
        """The embedding as float32 (D,); empty when none was stored."""
        return np.frombuffer(bytes(self.embedding), dtype="<f2").astype(np.float32)


class PredictionScore(models.Model):
    """One tag's probability in one prediction (detection: its best box), for tag sorts."""

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="scores")
    iteration = models.ForeignKey("training.Iteration", on_delete=models.CASCADE, related_name="+")
    tag = models.ForeignKey("labeling.Tag", on_delete=models.CASCADE, related_name="+")
    probability = models.FloatField()
    # A copy of `prediction.status == open`, kept by the triage services, so the sort is an
    # index range scan without a join.
    is_open = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prediction", "tag"], name="unique_prediction_score"),
        ]
        indexes = [
            models.Index(
                fields=["iteration", "tag", "is_open", "probability", "prediction"],
                name="prediction_score_rank_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tag_id}: {self.probability:.3f}"


class Suggestion(models.Model):
    """Tags the default iteration suggests for an untagged training image (smart labeler)."""

    image = models.OneToOneField(
        "labeling.Image", on_delete=models.CASCADE, related_name="suggestion"
    )
    iteration = models.ForeignKey("training.Iteration", on_delete=models.CASCADE, related_name="+")
    # [{"tagId", "tagName", "probability"}], highest first; only tags a reviewer would accept.
    tags = models.JSONField(default=list)
    # Detection: [{"tagId", "tagName", "probability", "boundingBox"}] above the threshold.
    boxes = models.JSONField(default=list)
    # Most gain's inputs, as a stored prediction keeps them (predictions.services.ranking):
    # the model's uncertainty and the compact embedding (training.ml.ranking.compact_embeddings,
    # float16 little-endian: 256 bytes), both from the run that made the suggestion.
    uncertainty = models.FloatField(default=0.0)
    embedding = models.BinaryField(blank=True, default=b"")
    # Detection: every box's probability the model returned, below the threshold too (its
    # doubtful boxes, training.ml.uncertainty.doubtful_boxes), and its flip disagreement: the
    # rest of what a stored prediction gives Most gain. Empty / None for classification.
    box_probabilities = models.JSONField(default=list)
    flip_disagreement = models.FloatField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"suggestion for image {self.image_id}"


class SuggestionRun(models.Model):
    """A project's latest "Suggest tags" run, so the gallery can say how far it has got.

    `finished` is set when the task stops re-queueing itself (nothing left, or nothing more it
    could suggest). A worker that dies leaves it unset: `updated` then stops moving, and the
    progress line says so instead of promising progress (predictions.services.suggestions).
    """

    project = models.OneToOneField("labeling.Project", on_delete=models.CASCADE, related_name="+")
    iteration = models.ForeignKey("training.Iteration", on_delete=models.CASCADE, related_name="+")
    started = models.DateTimeField()
    updated = models.DateTimeField()  # the last batch stored (or the start)
    finished = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"suggestion run of project {self.project_id}"
