""" "More like this" from any image a user looks at: a training image, a stored prediction (the
Predictions tab, a stored quick test) or its image.

Training owns the image embeddings and the nearest-neighbour rule
(training.services.embedding_map). What only this app knows is the stored prediction: it keeps
the embedding its model computed (Prediction.embedding), which is the project's image embedding
whenever that model served the stock backbone of the project's domain (a quick classifier, a
detector). Then nothing runs: the stored vector is compared with the training images' vectors
as a training image's own would be. A fine-tuned model's embedding lives in another space, so
the image is embedded with the stock backbone instead (once: the feature cache keeps it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.urls import reverse

from labeling.access import access_image
from labeling.image_sets import ImageSet
from labeling.models import Image, Project
from predictions.models import Prediction
from project.errors import NotFound
from training.services.embedding_map import (
    LIKE_COUNT,
    LIKE_KEY,
    image_embedding,
    serves_image_embeddings,
    similar_to_embedding,
)
from training.services.embedding_map import similar_image_ids as similar_training_ids


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
