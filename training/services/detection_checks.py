"""What a detection iteration trains on: boxes and "no objects" images, and the rules they pass.

A detection image is training data when it has at least one box (Region) or a reviewer marked
it "no objects" (the project's Negative tag as an ImageTag, see labeling.services.regions); an
image nobody looked at yet is neither and stays out. Columns are the regular tags with at least
one box, in tag creation order, as for classification.
"""

from __future__ import annotations

from collections import defaultdict

from labeling.models import ImageTag, Project, Region, Tag
from project.errors import LabelRuleError
from training.services.snapshot import Snapshot, SnapshotImage, SnapshotTag, snapshot_hash

# Custom Vision asks for 15 images per tag for detection. We refuse below 5 (as for
# classification): with the 20% held-out split that still leaves one image of a 5-image tag to
# measure on, and a small project can see a first model early. The Train page says more helps.
MIN_DETECTION_IMAGES_PER_TAG = 5
MIN_DETECTION_TAGS = 1

BoxRow = tuple[int, float, float, float, float]


def take_detection_snapshot(project: Project) -> Snapshot:
    """The project's boxed and "no objects" training images, with boxes as tag indexes."""
    tags = {tag.pk: tag for tag in project.tags.all()}
    regions = _regions_by_image(project)
    negative_ids = set(
        ImageTag.objects.filter(
            image__project=project, image__is_training=True, tag__kind=Tag.Kind.NEGATIVE
        ).values_list("image_id", flat=True)
    )
    image_count: dict[int, int] = defaultdict(int)
    for boxes in regions.values():
        for tag_id in {box[0] for box in boxes}:
            image_count[tag_id] += 1
    regular = [
        tag
        for tag in sorted(tags.values(), key=lambda t: t.pk)
        if tag.kind == Tag.Kind.REGULAR and image_count[tag.pk] > 0
    ]
    index_of = {tag.pk: index for index, tag in enumerate(regular)}
    rows = (
        project.images.training()
        .filter(pk__in=set(regions) | negative_ids)
        .order_by("id")
        .values_list("id", "sha256", "file", "original_name")
    )
    images = []
    for image_id, sha256, file_name, original_name in rows:
        boxes: tuple[BoxRow, ...] = tuple(
            (index_of[tag_id], left, top, width, height)
            for tag_id, left, top, width, height in regions.get(image_id, ())
            if tag_id in index_of
        )
        images.append(
            SnapshotImage(
                image_id=image_id,
                sha256=sha256,
                file_name=file_name,
                original_name=original_name,
                labels=tuple(sorted({box[0] for box in boxes})),
                # Boxes win over a stale mark: an image with objects is never a negative.
                is_negative=not boxes,
                boxes=boxes,
            )
        )
    snapshot_tags = [
        SnapshotTag(tag_id=tag.pk, name=tag.name, image_count=image_count[tag.pk])
        for tag in regular
    ]
    return Snapshot(tags=snapshot_tags, images=images, hash=snapshot_hash(snapshot_tags, images))


def _regions_by_image(project: Project) -> dict[int, list[BoxRow]]:
    """{image id: [(tag id, left, top, width, height)]} of the training images, in one query."""
    regions: dict[int, list[BoxRow]] = defaultdict(list)
    for image_id, tag_id, left, top, width, height in (
        Region.objects.filter(image__project=project, image__is_training=True)
        .order_by("image_id", "id")
        .values_list("image_id", "tag_id", "left", "top", "width", "height")
    ):
        regions[image_id].append((tag_id, left, top, width, height))
    return regions


def check_detection_trainable(snapshot: Snapshot) -> None:
    """Raise LabelRuleError when the boxes cannot make a detector, saying what to fix."""
    if len(snapshot.tags) < MIN_DETECTION_TAGS:
        raise LabelRuleError(
            "Detection training needs boxes: draw boxes around the objects in at least "
            f"{MIN_DETECTION_IMAGES_PER_TAG} images first."
        )
    short = [tag for tag in snapshot.tags if tag.image_count < MIN_DETECTION_IMAGES_PER_TAG]
    if short:
        listed = ", ".join(f"“{tag.name}” ({tag.image_count})" for tag in short)
        raise LabelRuleError(
            f"Each tag needs boxes on at least {MIN_DETECTION_IMAGES_PER_TAG} images to train "
            f"a detector; these have fewer: {listed}. Draw more boxes, or delete the tag."
        )
