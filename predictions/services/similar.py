""" "More like this" from any image a user looks at: a training image, a stored prediction (the
Predictions tab, a stored quick test) or its image.

Training owns the image embeddings and the nearest-neighbour rule
(training.services.embedding_map). What only this app knows is the stored prediction: it keeps
the embedding its model computed (Prediction.embedding), which is the project's image embedding
whenever that model served the stock backbone of the project's domain (a quick classifier, a
detector). Then nothing runs: the stored vector is compared with the training images' vectors
as a training image's own would be. A fine-tuned model's embedding lives in another space, so
the image is embedded with the stock backbone instead (once: the feature cache keeps it).

A quick test that is not stored has no image id: `training_images_like_upload` compares the
embedding its model returned, and only when that is the project's image embedding. It does not
embed the pixels with the stock backbone for a fine-tuned model: that is torch in the web
process, which serves with ONNX Runtime only (training.ml.serving). Measured on the dev box,
one 640x480 JPEG: import and engine build 11 s and +840 MB RSS the first time, then 20 ms.
The page says why the images are absent instead; a stored test embeds its image (above).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.urls import reverse

from labeling.access import access_image, visible_images
from labeling.image_sets import ImageSet
from labeling.models import Image, Project
from predictions.models import Prediction
from project.errors import NotFound
from training.models import Iteration
from training.services.embedding_map import (
    LIKE_COUNT,
    LIKE_KEY,
    image_embedding,
    serves_image_embeddings,
    similar_to_embedding,
)

if TYPE_CHECKING:
    from predictions.services.predict import QuickTestResult
from training.services.embedding_map import similar_image_ids as similar_training_ids

# The quick test's strip under its result: a row or two of thumbnails, not a gallery page.
UPLOAD_LIKE_COUNT = 12


def similar_image_ids(
    *,
    project: Project,
    by: AbstractBaseUser,
    image: Image | None = None,
    prediction: Prediction | None = None,
    count: int = LIKE_COUNT,
) -> list[int]:
    """The training images most like `image` or `prediction` (give one), most similar first,
    the image itself left out.

    Access goes through labeling.access: an image of another project is NotFound, a stored
    prediction (or its image) needs the reviewer role, as the Predictions tab does.
    """
    if prediction is not None and image is None:
        if prediction.project_id != project.pk:
            raise NotFound("That prediction is not in this project.")
        image_id = prediction.image_id
    elif image is not None and prediction is None:
        image_id = image.pk
    else:
        raise TypeError("Give an image or a prediction, one of them.")
    image = access_image(by, project, image_id)
    if image.is_training:  # a training image, or a prediction moved into the training data
        return similar_training_ids(project, image.pk, count=count)
    if prediction is None:
        prediction = Prediction.objects.filter(image=image).select_related("iteration").first()
    vector = _served_embedding(prediction) if prediction is not None else None
    if vector is None:
        vector = image_embedding(project, image.pk)
    return [] if vector is None else similar_to_embedding(project, vector, count=count)


def _served_embedding(prediction: Prediction) -> np.ndarray | None:
    """The prediction's stored embedding when it is in the training images' space, else None."""
    if not prediction.embedding or not serves_image_embeddings(prediction.iteration):
        return None
    vector = prediction.embedding_vector()
    return vector if vector.size else None


def like_set(user: AbstractBaseUser, project: Project, query: Mapping[str, str]) -> ImageSet:
    """labeling.image_sets' provider for `?like=<image id>`: the image, then its neighbours."""
    image = access_image(user, project, query.get(LIKE_KEY, ""))
    neighbours = similar_image_ids(project=project, by=user, image=image)
    return ImageSet(
        label=f"More like image {image.pk}",
        image_ids=[image.pk, *neighbours],
        params={LIKE_KEY: str(image.pk)},
        back_url=reverse(
            "labeling:image-boxes" if project.is_detection else "labeling:image-tag",
            args=[project.pk, image.pk],
        ),
        back_label="The image",
        prediction=lambda other: None,
    )


@dataclass(frozen=True)
class UploadNeighbours:
    """The training images most like an image that was not stored, most similar first, and
    why there are none when `images` is empty (a sentence for the page; "" otherwise).
    `is_comparable` is False when the model's embedding could not be compared at all."""

    images: list[Image]
    absent_reason: str = ""
    is_comparable: bool = True

    @property
    def image_ids(self) -> list[int]:
        return [image.pk for image in self.images]


def training_images_like_upload(
    *, project: Project, by: AbstractBaseUser, result: QuickTestResult
) -> UploadNeighbours | None:
    """The training images nearest a quick test's image, by the embedding its model returned
    (ModelOutput.embedding); None for a stored test, whose image has "More like this" itself.

    Compared only when `serves_image_embeddings(iteration)`: a fine-tuned model's vector, or
    one from another backbone than the project's domain uses now, lives in another space and
    would point anywhere (see the module for why the pixels are not embedded again here).
    Only images `by` may open, through labeling.access (a non-member: NotFound).
    """
    if result.prediction is not None:
        return None
    images = visible_images(by, project)
    iteration = project.iterations.filter(pk=result.target.iteration_id).first()
    if iteration is None:
        raise NotFound("Choose an iteration of this project.")
    iteration.project = project
    if not serves_image_embeddings(iteration):
        return UploadNeighbours([], _not_comparable(iteration), is_comparable=False)
    ids = similar_to_embedding(project, result.outcome.embedding, count=UPLOAD_LIKE_COUNT)
    rows = images.filter(pk__in=ids, is_training=True).only("pk", "thumbnail", "original_name")
    by_id = {image.pk: image for image in rows}
    found = [by_id[pk] for pk in ids if pk in by_id]
    if not found:
        return UploadNeighbours(
            [],
            "No training image has an embedding yet: the embedding map and training compute them.",
        )
    return UploadNeighbours(found)


def _not_comparable(iteration: Iteration) -> str:
    if iteration.training_type == Iteration.TrainingType.ADVANCED:
        why = "this iteration is fine-tuned, so its model describes images in its own terms"
    else:
        why = "this iteration was trained on another backbone than the project uses now"
    return f"No similar training images: {why}. A stored test (reviewers, admins) shows them."
