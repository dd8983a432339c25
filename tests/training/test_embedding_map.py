"""The embedding map: its layout (training.ml.layout), the worker task, the map's API and page,
tagging a selection, and "more like this" (?like=<image id>) with the real backbone."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from labeling.models import ImageTag, Project, Role
from tests.factories import ImageFactory, ImageTagFactory, ProjectFactory, TagFactory
from training.ml.features import FeatureCache
from training.ml.layout import LayoutError, layout_2d, nearest
from training.models import EmbeddingMap
from training.services.embedding_map import current_map, map_fingerprint, similar_image_ids
from training.tasks_map import lay_out_map

pytestmark = pytest.mark.django_db


# --- training.ml.layout -------------------------------------------------------------------


def _clusters(count: int, per: int, dim: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, dim)) * 4
    labels = np.repeat(np.arange(count), per)
    return centres[labels] + rng.standard_normal((count * per, dim)), labels


def test_layout_keeps_clusters_together_and_fits_the_unit_square() -> None:
    vectors, labels = _clusters(4, 25)
    points = layout_2d(vectors, seed=0)
    assert points.shape == (100, 2) and points.dtype == np.float32
    assert np.abs(points).max() == pytest.approx(1.0, abs=1e-5)
    # Each point's nearest neighbour on the map belongs to its own cluster.
    distances = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(1)] == labels).mean() >= 0.97
    assert np.array_equal(points, layout_2d(vectors, seed=0))  # reproducible


def test_layout_of_a_handful_and_of_nothing() -> None:
    vectors, _ = _clusters(2, 2)
    assert layout_2d(vectors).shape == (4, 2)
    assert layout_2d(np.zeros((0, 8))).shape == (0, 2)
    assert layout_2d(np.ones((1, 8))).shape == (1, 2)


@pytest.mark.parametrize(
    "bad", [np.zeros(5), np.full((20, 4), np.nan), np.array([[1.0, np.inf]] * 20)]
)
def test_layout_refuses_bad_input_by_name(bad) -> None:
    with pytest.raises(LayoutError, match="embeddings"):
        layout_2d(bad)


def test_nearest_ranks_by_cosine_and_leaves_the_query_out() -> None:
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0], [10, 1]], dtype=np.float32)
    assert nearest(vectors, vectors[0], k=2, exclude=0).tolist() == [4, 1]
    assert nearest(vectors, vectors[0], k=10, exclude=0).tolist() == [4, 1, 2, 3]
    with pytest.raises(LayoutError):
        nearest(vectors, np.ones(3), k=1)


# --- The worker task and the API ----------------------------------------------------------


def _dim(project: Project) -> int:
    """Values in an embedding of the project's backbone."""
    from training.ml.backbones import get_backbone
    from training.services.iterations import backbone_for

    return get_backbone(backbone_for(project)).feature_dim


def _cached(project: Project, images, vectors) -> None:
    from django.conf import settings

    from training.services.iterations import backbone_for

    FeatureCache(settings.LOUPE_FEATURE_CACHE_DIR).put_many(
        {image.sha256: v for image, v in zip(images, vectors, strict=True)}, backbone_for(project)
    )


@pytest.fixture
def mapped(project):
    """A project with 2 tags, 20 images whose cached embeddings form 2 clusters, 4 untagged."""
    cat, dog = TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")
    images = [ImageFactory(project=project) for _ in range(24)]
    for image in images[:10]:
        ImageTagFactory(image=image, tag=cat)
    for image in images[10:20]:
        ImageTagFactory(image=image, tag=dog)
    vectors, _ = _clusters(2, 12, dim=_dim(project))
    _cached(project, images, vectors.astype(np.float32))
    return images, cat, dog


def test_the_task_lays_out_every_image_and_the_api_colours_them(
    project, users, client_for, mapped
) -> None:
    images, cat, dog = mapped
    current_map(project)  # queued; the broker is down in tests, so the task is run here
    lay_out_map(project.pk)
    emap = EmbeddingMap.objects.get(project=project)
    assert emap.status == EmbeddingMap.Status.DONE
    assert emap.image_count == 24 and emap.fingerprint == map_fingerprint(project)

    response = client_for(users[str(Role.ANNOTATOR)]).get(f"/api/projects/{project.pk}/map/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "done"
    assert {t["name"] for t in body["tags"]} == {"cat", "dog"}
    by_id = {p["id"]: p for p in body["points"]}
    assert set(by_id) == {i.pk for i in images}
    assert by_id[images[0].pk]["tags"] == [cat.pk]
    assert by_id[images[15].pk]["tags"] == [dog.pk]
    assert by_id[images[22].pk]["tags"] == []
    assert all(-1 <= p["x"] <= 1 and -1 <= p["y"] <= 1 for p in body["points"])
    # The two clusters land apart: every cat's nearest other point is in its own cluster.
    xy = np.array([[by_id[i.pk]["x"], by_id[i.pk]["y"]] for i in images])
    distances = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert (distances.argmin(1)[:12] < 12).all()

    page = client_for(users[str(Role.ANNOTATOR)]).get(f"/projects/{project.pk}/map/")
    assert page.status_code == 200
    assert b"data-embedding-map" in page.content and b'data-testid="tab-map"' in page.content


def test_the_first_read_of_a_new_projects_map_sends_its_layout(project, mapped) -> None:
    """A map row is born idle: born "queued" it was never sent, and never went stale."""
    emap = current_map(project)
    emap.refresh_from_db()
    assert emap.requested is not None  # went through request_run: the task was sent
    # Sent: queued for the worker, or failed with the reason when the queue is down (tests).
    assert emap.status in (EmbeddingMap.Status.QUEUED, EmbeddingMap.Status.FAILED)


def test_a_new_upload_makes_the_map_stale_and_queues_a_layout(project, mapped) -> None:
    current_map(project)
    lay_out_map(project.pk)
    ImageFactory(project=project)
    emap = current_map(project)
    # Queued for the worker; with no broker in the tests the send fails and the map says so.
    assert emap.fingerprint != map_fingerprint(project)
    emap.refresh_from_db()
    assert emap.status in (EmbeddingMap.Status.QUEUED, EmbeddingMap.Status.FAILED)
    if emap.status == EmbeddingMap.Status.FAILED:
        assert "could not be queued" in emap.failure_message


def test_the_job_ends_failed_with_a_reason_on_bad_embeddings(project) -> None:
    images = [ImageFactory(project=project) for _ in range(15)]
    vectors = np.ones((15, _dim(project)), dtype=np.float32)
    vectors[3] = np.nan  # a damaged cache entry
    _cached(project, images, vectors)
    current_map(project)
    lay_out_map(project.pk)
    emap = EmbeddingMap.objects.get(project=project)
    assert emap.status == EmbeddingMap.Status.FAILED
    assert emap.failure_message == (
        "The layout failed; the details are in the server's log. Try again later."
    )
    assert "LayoutError" not in emap.failure_message  # no exception text for the user
    assert emap.finished is not None


def test_the_job_ends_for_a_project_with_no_images_and_for_a_stale_run(project) -> None:
    current_map(project)
    lay_out_map(project.pk)
    emap = EmbeddingMap.objects.get(project=project)
    assert emap.status == EmbeddingMap.Status.DONE and emap.image_count == 0
    lay_out_map(987654)  # a project that is gone: nothing to claim, nothing raised


def test_a_lost_worker_is_marked_failed_and_queued_again(project, mapped) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from training.services.embedding_map import STALE_AFTER_S

    emap = current_map(project)
    EmbeddingMap.objects.filter(pk=emap.pk).update(
        status=EmbeddingMap.Status.RUNNING,
        requested=timezone.now() - timedelta(seconds=STALE_AFTER_S + 5),
    )
    emap = current_map(project, refresh=False)
    assert emap.status == EmbeddingMap.Status.FAILED
    assert "did not finish" in emap.failure_message


# --- Tagging a selection ------------------------------------------------------------------


def test_the_selection_is_tagged_through_the_gallerys_bulk_service(
    project, users, client_for, mapped
) -> None:
    images, _cat, dog = mapped
    other = ImageFactory(project=ProjectFactory())  # not this project's: silently left out
    client = client_for(users[str(Role.ANNOTATOR)])
    chosen = [images[0].pk, images[1].pk, images[22].pk, other.pk]
    response = client.post(
        f"/projects/{project.pk}/map/tag/",
        {"image_ids": chosen, "tag": dog.pk},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["notice"] == "Tagged 3 images “dog”."
    # Multiclass: the cats become dogs (replaced), the untagged one is now a dog.
    for pk in chosen[:3]:
        assert list(ImageTag.objects.filter(image_id=pk).values_list("tag_id", flat=True)) == [
            dog.pk
        ]
    assert not ImageTag.objects.filter(image=other).exists()


def test_tagging_without_a_tag_or_images_is_refused_with_a_reason(
    project, users, client_for, mapped
) -> None:
    images, _cat, dog = mapped
    client = client_for(users[str(Role.ANNOTATOR)])
    url = f"/projects/{project.pk}/map/tag/"
    no_tag = client.post(url, {"image_ids": [images[22].pk]}, HTTP_ACCEPT="application/json")
    assert no_tag.status_code == 422
    assert no_tag.json()["error"] == "Choose the tag to add to the selected images."
    nothing = client.post(url, {"tag": dog.pk}, HTTP_ACCEPT="application/json")
    assert nothing.status_code == 422
    assert nothing.json()["error"] == "Select at least one image first."
    foreign = TagFactory(project=ProjectFactory())
    wrong = client.post(
        url, {"image_ids": [images[22].pk], "tag": foreign.pk}, HTTP_ACCEPT="application/json"
    )
    assert wrong.status_code == 422
    assert not ImageTag.objects.filter(image=images[22]).exists()


# --- More like this -----------------------------------------------------------------------


def _photo(seed: int, size: int = 96) -> PILImage.Image:
    """A textured picture: blobs of colour on a gradient, different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0, 255, 3)
    pixels = np.stack(
        [base[c] * (0.5 + 0.5 * np.sin(x * rng.uniform(2, 12) + c)) for c in range(3)], -1
    )
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        pixels[mask] = rng.uniform(0, 255, 3)
    return PILImage.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _encoded(picture: PILImage.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def test_more_like_this_puts_a_resized_copy_first(project, users, client_for) -> None:
    pictures = [_photo(seed) for seed in range(14)]
    originals = [
        ImageFactory(project=project, content=_encoded(p), width=96, height=96) for p in pictures
    ]
    # A resized, re-encoded copy of picture 5.
    copy_bytes = _encoded(pictures[5].resize((64, 64)), "JPEG", quality=80)
    copy = ImageFactory(project=project, content=copy_bytes, width=64, height=64, format="JPEG")
    current_map(project)
    lay_out_map(project.pk)  # embeds every image with the real backbone, then lays them out
    assert EmbeddingMap.objects.get(project=project).status == EmbeddingMap.Status.DONE

    assert similar_image_ids(project, originals[5].pk)[0] == copy.pk
    assert similar_image_ids(project, copy.pk)[0] == originals[5].pk
    # Another picture's neighbours do not start with the copy (it is not just any image).
    for other in (originals[0], originals[9]):
        assert similar_image_ids(project, other.pk)[0] != copy.pk

    # Through the gallery: the set is the image, then its neighbours; bulk actions work on it.
    client = client_for(users[str(Role.ANNOTATOR)])
    response = client.get(f"/projects/{project.pk}/?like={originals[5].pk}")
    assert response.status_code == 200
    image_set = response.context["image_set"]
    assert list(image_set.image_ids[:2]) == [originals[5].pk, copy.pk]
    assert f"More like image {originals[5].pk}" in response.content.decode()
    assert f"like={originals[5].pk}" in response.context["bulk_url"]
    # The tagging view and the gallery's thumbnails link to the set.
    link = f'href="/projects/{project.pk}/?like={originals[5].pk}"'
    assert link in client.get(f"/projects/{project.pk}/images/{originals[5].pk}/").content.decode()
    gallery = client.get(f"/projects/{project.pk}/").content.decode()
    assert f'form="like-form" name="like" value="{originals[5].pk}"' in gallery
    assert f'id="like-form" method="get" action="/projects/{project.pk}/"' in gallery


def test_more_like_this_of_an_unknown_image_is_not_found(project, users, client_for) -> None:
    client = client_for(users[str(Role.ANNOTATOR)])
    other = ImageFactory(project=ProjectFactory())
    assert client.get(f"/projects/{project.pk}/?like={other.pk}").status_code == 404
    assert client.get(f"/projects/{project.pk}/?like=abc").status_code == 404


def test_the_api_marks_mispredicted_and_suggested_images(project, users, client_for) -> None:
    from predictions.models import Suggestion
    from tests.training.conftest import make_iteration

    # Image 0 predicted right, image 1 wrong (cat scored as dog), by the latest iteration.
    iteration = make_iteration(project, rows=[([0], [0.9, 0.1]), ([0], [0.1, 0.9])])
    right, wrong = [s.image for s in iteration.images.order_by("pk")]
    untagged = ImageFactory(project=project)
    cat = TagFactory(project=project, name="cat")
    Suggestion.objects.create(
        image=untagged,
        iteration=iteration,
        tags=[{"tagId": cat.pk, "tagName": "cat", "probability": 0.95}],
    )
    images = [right, wrong, untagged]
    vectors = np.random.default_rng(0).standard_normal((3, _dim(project))).astype("f4")
    _cached(project, images, vectors)
    current_map(project)
    lay_out_map(project.pk)
    body = client_for(users[str(Role.ANNOTATOR)]).get(f"/api/projects/{project.pk}/map/").json()
    flags = {p["id"]: (p["mispredicted"], p["suggested"]) for p in body["points"]}
    assert flags == {right.pk: (False, False), wrong.pk: (True, False), untagged.pk: (False, True)}
