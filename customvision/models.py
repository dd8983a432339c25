"""What only Custom Vision's wire needs kept: nothing of Loupe's own rules lives here."""

from __future__ import annotations

from django.db import models


class Publication(models.Model):
    """The prediction resource a Custom Vision client named when it published an iteration
    (`publish_iteration(..., prediction_id)`), echoed back as `originalPublishResourceId`.

    It names an Azure resource, which means nothing to Loupe: it is kept only so a client that
    reads it back gets what it sent. Written by the Training API's publish, removed by its
    unpublish; shown only while the iteration is published.
    """

    iteration = models.OneToOneField(
        "training.Iteration", on_delete=models.CASCADE, related_name="+"
    )
    resource_id = models.CharField(max_length=500)

    def __str__(self) -> str:
        return f"{self.iteration_id} published for {self.resource_id}"
