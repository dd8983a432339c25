"""Each failure reason comes from a real bad dataset; none leaves an iteration "training".

The task function runs in the test's thread here (the real-worker path is in
test_training_e2e.py and test_worker_lost.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.storage import default_storage

from training.ml.backbones import get_backbone
from training.ml.features import FeatureCache
from training.models import Iteration
from training.services.iterations import backbone_for, start_iteration
from training.tasks import run_iteration

pytestmark = pytest.mark.django_db


def test_an_unreadable_image_fails_with_dataset_corrupt_naming_it(project, users, build_dataset):
    red, _ = build_dataset(project, {"red": 5, "green": 5})
    broken = project.images.filter(image_tags__tag=red).order_by("id")[2]
    broken.original_name = "holiday-photo.jpg"
    broken.save()
    with default_storage.open(broken.file.name, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n this is not a picture any more")
    iteration = start_iteration(project=project, by=users["admin"])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert iteration.failure_reason == "dataset_corrupt"
    assert "“holiday-photo.jpg”" in iteration.failure_message
    assert iteration.lease_expires is None and iteration.finished is not None
    assert not iteration.scores.exists() and not iteration.artifact


def test_an_image_deleted_from_storage_is_a_corrupt_dataset(project, users, build_dataset):
    build_dataset(project, {"red": 5, "green": 5})
    gone = project.images.order_by("id").last()
    iteration = start_iteration(project=project, by=users["admin"])
    default_storage.delete(gone.file.name)

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.failure_reason == "dataset_corrupt"
    assert f"“{gone.original_name}”" in iteration.failure_message


def test_a_nan_feature_fails_with_training_diverged(project, users, build_dataset, settings):
    build_dataset(project, {"red": 5, "green": 5})
    poisoned = project.images.order_by("id").first()
    # A damaged feature-cache entry of the right size but full of NaN: the head's loss goes NaN.
    backbone = backbone_for(project)
    dim = get_backbone(backbone).feature_dim
    FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR).put_many(
        {poisoned.sha256: np.full(dim, np.nan, dtype=np.float32)}, backbone
    )
    iteration = start_iteration(project=project, by=users["admin"])

    run_iteration(iteration.pk)

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert iteration.failure_reason == "training_diverged"
    assert iteration.failure_message.startswith("Training diverged")


def test_a_finished_iteration_is_not_trained_again(project, users, build_dataset):
    build_dataset(project, {"red": 5, "green": 5})
    iteration = start_iteration(project=project, by=users["admin"])
    Iteration.objects.filter(pk=iteration.pk).update(
        status=Iteration.Status.FAILED, failure_reason="unexpected"
    )
    run_iteration(iteration.pk)  # a redelivered message: claims nothing
    iteration.refresh_from_db()
    assert (iteration.status, iteration.attempts) == ("failed", 0)
