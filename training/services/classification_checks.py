"""What a classification iteration trains on: the snapshot of a project's image tags, and the
rules it must pass (training.services.detection_checks is the same for boxes).

The snapshot is taken when Train is pressed, in the same transaction that creates the iteration,
so later tagging never changes what a queued or running iteration learns from.
"""

from __future__ import annotations

from collections import defaultdict

from labeling.models import ImageTag, Project, Tag
from project.errors import LabelRuleError
from training.services.snapshot import Snapshot, SnapshotImage, SnapshotTag, snapshot_hash

# Custom Vision's floor: below it a tag's cross-validated figures mean nothing.
MIN_IMAGES_PER_TAG = 5
MIN_TAGS = 2


def take_classification_snapshot(project: Project) -> Snapshot:
    """The project's tagged training images and their labels, as training would see them.

    Columns are the regular tags that label at least one image, in tag creation order; a tag
    nobody used yet is left out rather than refused, so creating tags ahead of tagging is free.
    """
    tags = {tag.pk: tag for tag in project.tags.all()}
    labels_by_image: dict[int, list[int]] = defaultdict(list)
    for image_id, tag_id in ImageTag.objects.filter(
        image__project=project, image__is_training=True
    ).values_list("image_id", "tag_id"):
        labels_by_image[image_id].append(tag_id)
    counts: dict[int, int] = defaultdict(int)
    for tag_ids in labels_by_image.values():
        for tag_id in tag_ids:
            counts[tag_id] += 1
    regular = [
        tag
        for tag in sorted(tags.values(), key=lambda t: t.pk)
        if tag.kind == Tag.Kind.REGULAR and counts[tag.pk] > 0
    ]
    index_of = {tag.pk: index for index, tag in enumerate(regular)}
    rows = (
        project.images.training()
        .filter(pk__in=labels_by_image.keys())
        .order_by("id")
        .values_list("id", "sha256", "file", "original_name")
    )
    images = []
    for image_id, sha256, file_name, original_name in rows:
        tag_ids = labels_by_image[image_id]
        images.append(
            SnapshotImage(
                image_id=image_id,
                sha256=sha256,
                file_name=file_name,
                original_name=original_name,
                labels=tuple(sorted(index_of[t] for t in tag_ids if t in index_of)),
                is_negative=any(tags[t].kind == Tag.Kind.NEGATIVE for t in tag_ids),
            )
        )
    snapshot_tags = [
        SnapshotTag(tag_id=tag.pk, name=tag.name, image_count=counts[tag.pk]) for tag in regular
    ]
    return Snapshot(tags=snapshot_tags, images=images, hash=snapshot_hash(snapshot_tags, images))


def check_classification_trainable(snapshot: Snapshot) -> None:
    """Raise LabelRuleError when the snapshot cannot make a model, saying what to fix."""
    if len(snapshot.tags) < MIN_TAGS:
        raise LabelRuleError(
            f"Training needs at least {MIN_TAGS} tags with images; this project has "
            f"{len(snapshot.tags)}. Tag images with more tags first."
        )
    short = [tag for tag in snapshot.tags if tag.image_count < MIN_IMAGES_PER_TAG]
    if short:
        listed = ", ".join(f"“{tag.name}” ({tag.image_count})" for tag in short)
        raise LabelRuleError(
            f"Each tag needs at least {MIN_IMAGES_PER_TAG} images to train; these have fewer: "
            f"{listed}."
        )
