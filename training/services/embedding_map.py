"""The embedding map (a 2-D layout of every training image) and "more like this".

Invariant: a project has one EmbeddingMap; a layout is queued (by task name) only when none is
queued or running, and the map records the fingerprint of the image set and backbone it was
laid out from. Reading a map whose fingerprint differs from the project's current one (images
uploaded or deleted, another domain) queues a new layout, so the map follows uploads without
the upload code calling this app. Labels are not part of the fingerprint: they are read when
the map is shown, so tagging a cluster recolours it at once without a new layout. A worker that
dies leaves the map "queued"/"running" only until STALE_AFTER_S; the next read marks it failed
with a reason and queues it again, so no layout hangs forever.

Embeddings come from the feature cache (training.ml.features) the health check and training
fill; the worker embeds the images still missing (training.services.health's helper).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db.models import Count, Max, Sum
from django.utils import timezone

from labeling.access import require_role, visible_images
from labeling.gallery_extensions import extra_filters
from labeling.models import ImageTag, Project, Role
from project.errors import NotFound
from training.ml.layout import layout_2d, nearest
from training.models import EmbeddingMap, Iteration
from training.services.embeddings import cached_embeddings
from training.services.project_jobs import claim_run, request_run

logger = logging.getLogger(__name__)

TASK = "training.lay_out_map"
TIME_LIMIT_S = 1800  # embedding 20,000 new images on a CPU worker; the layout takes a minute
STALE_AFTER_S = TIME_LIMIT_S + 300
LIKE_KEY = "like"  # ?like=<image id>: the gallery's and tagging view's "more like this" set
LIKE_COUNT = 47  # the image itself and 47 neighbours: 48, a gallery page's worth
SUGGESTED_FILTER = "suggested"  # predictions' gallery filter (labeling.gallery_extensions)


def map_fingerprint(project: Project) -> str:
    """What a layout depends on: the set of training images (any upload or deletion changes the
    count, the top id or the id sum) and the backbone of the project's domain."""
    from training.services.iterations import backbone_for

    images = project.images.training().aggregate(n=Count("pk"), top=Max("pk"), s=Sum("pk"))
    text = f"{images['n']}:{images['top']}:{images['s']}:{backbone_for(project)}"
    return hashlib.sha256(text.encode()).hexdigest()


# A new map row starts idle, not "queued": request_run queues only a row that is not queued or
# running already, so a row born "queued" (the model's default) would never get its task.
_IDLE = {"status": EmbeddingMap.Status.DONE}


def current_map(project: Project, *, refresh: bool = True) -> EmbeddingMap:
    """The project's map, queueing a layout when it is missing, stale or lost (see module)."""
    emap, _ = EmbeddingMap.objects.get_or_create(project=project, defaults=_IDLE)
    now = timezone.now()
    active = (EmbeddingMap.Status.QUEUED, EmbeddingMap.Status.RUNNING)
    is_active = emap.status in active
    if is_active and emap.requested and now - emap.requested > timedelta(seconds=STALE_AFTER_S):
        EmbeddingMap.objects.filter(pk=emap.pk, status=emap.status).update(
            status=EmbeddingMap.Status.FAILED,
            failure_message="The layout did not finish (its worker stopped); it runs again.",
            finished=now,
        )
        emap.refresh_from_db()
        is_active = False
    if refresh and not is_active and emap.fingerprint != map_fingerprint(project):
        emap = request_map(project)
    return emap


def request_map(project: Project) -> EmbeddingMap:
    """Queue a layout unless one is queued or running; returns the map."""
    return request_run(
        EmbeddingMap,
        project,
        task=TASK,
        lost_message="The layout could not be queued (the task queue is down).",
        defaults=_IDLE,
    )


def run_map_layout(project_id: int) -> None:
    """The worker's job: claim, embed what is missing, lay out, store. Ends done or failed."""
    emap = claim_run(EmbeddingMap, project_id)
    if emap is None:
        return
    started = time.perf_counter()
    try:
        project = Project.objects.get(pk=project_id)
        fingerprint = map_fingerprint(project)
        ids, vectors = _project_embeddings(project, embed_missing=True)
        xy = layout_2d(vectors, seed=project.pk) if len(ids) else np.zeros((0, 2))
    except Exception:  # every job ends: a named failure, the details in the log only
        logger.exception("Embedding map of project %s failed", project_id)
        EmbeddingMap.objects.filter(pk=emap.pk).update(
            status=EmbeddingMap.Status.FAILED,
            failure_message=(
                "The layout failed; the details are in the server's log. Try again later."
            ),
            finished=timezone.now(),
        )
        return
    EmbeddingMap.objects.filter(pk=emap.pk).update(
        status=EmbeddingMap.Status.DONE,
        fingerprint=fingerprint,
        points={"ids": ids.tolist(), "xy": np.round(xy, 5).tolist()},
        failure_message="",
        image_count=len(ids),
        duration_s=time.perf_counter() - started,
        finished=timezone.now(),
    )


def _project_embeddings(project: Project, *, embed_missing: bool) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, (N, D) embeddings) of the training images that have one, in id order."""
    rows = list(project.images.training().order_by("pk").values_list("pk", "sha256"))
    matrix, embedded_rows = cached_embeddings(
        project, [r[1] for r in rows], embed_missing=embed_missing
    )
    if matrix is None or embedded_rows is None:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.float32)
    ids = np.array([rows[i][0] for i in embedded_rows.tolist()], dtype=np.int64)
    return ids, matrix


# --- What the map page shows ---------------------------------------------------------------


@dataclass(frozen=True)
class MapCategory:
    key: str  # "tag-3", "several", "untagged", "mispredicted", "suggested", "other"
    label: str


def map_payload(project: Project, user: AbstractBaseUser) -> dict[str, Any]:
    """The map as the browser draws it: status, and per point its id, position, thumbnail and
    the categories it is coloured by (its tag; mispredicted / suggested). Queues a layout when
    the stored one is stale."""
    require_role(user, project, Role.ANNOTATOR)
    emap = current_map(project)
    payload: dict[str, Any] = {
        "status": emap.status,
        "failure_message": emap.failure_message,
        "laid_out": emap.finished.isoformat() if emap.finished else None,
        "image_count": emap.image_count,
        "duration_s": round(emap.duration_s, 3),
        "tags": [{"id": t.pk, "name": t.name} for t in project.tags.all()],
        "points": [],
    }
    points = emap.points or {}
    ids = [int(i) for i in points.get("ids", [])]
    if not ids:
        return payload
    # Only images that still exist and the user may open (deleted ones drop out until relaid).
    rows = dict(
        visible_images(user, project)
        .filter(pk__in=ids, is_training=True)
        .values_list("pk", "thumbnail")
    )
    tags_of: dict[int, list[int]] = {}
    labels = ImageTag.objects.filter(image__project=project, image__is_training=True)
    for image_id, tag_id in labels.values_list("image_id", "tag_id"):
        tags_of.setdefault(image_id, []).append(tag_id)
    wrong = set(_mispredicted_ids(project))
    suggested = set(_suggested_ids(project))
    out = []
    for image_id, (x, y) in zip(ids, points.get("xy", []), strict=False):
        if image_id not in rows:
            continue
        thumb = rows[image_id]
        out.append(
            {
                "id": image_id,
                "x": x,
                "y": y,
                "tags": sorted(tags_of.get(image_id, [])),
                "mispredicted": image_id in wrong,
                "suggested": image_id in suggested,
                "thumb": default_storage.url(thumb) if thumb else "",
            }
        )
    payload["points"] = out
    return payload


def _mispredicted_ids(project: Project) -> list[int]:
    """The images the latest completed iteration got wrong at its suggested threshold."""
    from training.services.mispredicted import mispredicted_image_ids

    iteration = project.iterations.completed().order_by("-number").first()
    if iteration is None:
        return []
    iteration.project = project
    try:
        return mispredicted_image_ids(iteration, iteration.suggested_threshold)
    except Exception:  # an iteration without stored scores: the map shows no mispredictions
        logger.warning("No mispredictions for the map of project %s", project.pk, exc_info=True)
        return []


def _suggested_ids(project: Project) -> list[int]:
    """Images another app marks as having a suggestion (predictions' gallery filter)."""
    for extra in extra_filters():
        if extra.key == SUGGESTED_FILTER:
            narrowed = extra.narrow(project.images.training())
            return list(narrowed.values_list("pk", flat=True))
    return []


# --- More like this ------------------------------------------------------------------------
# Any image a user looks at asks here: a training image by id, anything else (a stored
# prediction: predictions.services.similar) by an embedding in the same space.


def similar_image_ids(project: Project, image_id: int, *, count: int = LIKE_COUNT) -> list[int]:
    """The training images nearest `image_id` by backbone embedding, most similar first (the
    image itself left out). Embeds the one image when the cache lacks it; images the cache
    lacks otherwise are left out until the map's worker has embedded them."""
    if not project.images.training().filter(pk=image_id).exists():
        raise NotFound("That image is not a training image of this project.")
    return list(_similar(project.pk, image_id, b"", count, _neighbour_stamp(project)))


def similar_to_embedding(
    project: Project, embedding: np.ndarray, *, count: int = LIKE_COUNT
) -> list[int]:
    """The training images nearest `embedding` ((D,) float, the stock backbone of the project's
    domain: `image_embedding`, or a stored prediction's when `serves_image_embeddings`), most
    similar first. Empty for an embedding of another width or with non-finite values."""
    query = np.ascontiguousarray(embedding, dtype=np.float32).ravel()
    if not query.size or not np.isfinite(query).all():
        return []
    return list(_similar(project.pk, None, query.tobytes(), count, _neighbour_stamp(project)))


def serves_image_embeddings(iteration: Iteration) -> bool:
    """Whether the embedding `iteration`'s model serves (what a stored prediction keeps) is the
    project's image embedding: the stock backbone of the project's current domain. A quick
    classifier and a detector serve the stock graph's (training.ml.serving); a fine-tuned
    (advanced) classifier serves its own features, another space."""
    from training.services.iterations import backbone_for

    project = iteration.project
    if iteration.backbone != backbone_for(project):
        return False
    return project.is_detection or iteration.training_type == Iteration.TrainingType.QUICK


def image_embedding(project: Project, image_id: int) -> np.ndarray | None:
    """The stock-backbone embedding (D,) of any image of the project, a stored prediction's
    included: from the feature cache, or computed now (a fraction of a second) and cached.
    None for an image that is gone or whose file cannot be read."""
    from training.ml.data import ImageRef
    from training.ml.errors import DatasetCorrupt
    from training.ml.features import FeatureCache, embed_images
    from training.services.iterations import backbone_for

    row = project.images.filter(pk=image_id).values_list("sha256", "file").first()
    if row is None:
        return None
    sha, name = row
    ref = ImageRef(key=sha, open=lambda: default_storage.open(name, "rb"))
    cache = FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR)
    try:
        vectors = embed_images([ref], backbone=backbone_for(project), cache=cache)
    except DatasetCorrupt as err:
        logger.warning("Image %s of project %s cannot be embedded: %s", image_id, project.pk, err)
        return None
    vector: np.ndarray = vectors[0]
    return vector


def _neighbour_stamp(project: Project) -> tuple[Any, ...]:
    """What the neighbours depend on, the training image set: results are cached per process
    by it, so Previous/Next in the tagging view do not read every embedding again. Creation
    times and the cache folder are part of it: a restored database (or a test's) may reuse ids."""
    images = project.images.training().aggregate(
        n=Count("pk"), top=Max("pk"), s=Sum("pk"), last=Max("created")
    )
    return (
        images["n"],
        images["top"],
        images["s"],
        str(images["last"]),
        str(project.created),
        project.domain,
        str(settings.LOUPE_FEATURE_CACHE_DIR),
    )


@lru_cache(maxsize=64)
def _similar(
    project_id: int, image_id: int | None, query_bytes: bytes, count: int, stamp: tuple[Any, ...]
) -> tuple[int, ...]:
    """Neighbours of training image `image_id`, or of the float32 embedding `query_bytes`."""
    project = Project.objects.get(pk=project_id)
    ids, vectors = _project_embeddings(project, embed_missing=False)
    exclude: int | None = None
    if image_id is None:
        query = np.frombuffer(query_bytes, dtype=np.float32)
    elif len(where := np.flatnonzero(ids == image_id)):
        query, exclude = vectors[where[0]], int(where[0])
    else:  # the one image not embedded yet: embed it now
        own = image_embedding(project, image_id)
        if own is None:
            return ()
        query = own
    if not len(ids) or query.shape[0] != vectors.shape[1]:
        return ()
    rows = nearest(vectors, query, k=count, exclude=exclude)
    return tuple(int(ids[r]) for r in rows)
