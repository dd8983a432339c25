"""The health check through its pages, API and worker task, on crafted projects."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.models import Role
from tests.factories import ImageFactory, ImageTagFactory, TagFactory
from training.ml.features import FeatureCache
from training.models import HealthReport, Iteration, IterationImage, IterationScore
from training.services.health import current_report, data_fingerprint
from training.tasks_health import check_health

pytestmark = pytest.mark.django_db


@pytest.fixture
def cache_dir(settings, tmp_path):
    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    return settings.LOUPE_FEATURE_CACHE_DIR


def _images(project, tag, count, **kw):
    images = [ImageFactory(project=project, width=640, height=480, **kw) for _ in range(count)]
    for image in images:
        ImageTagFactory(image=image, tag=tag)
    return images


def _embed(project, images, vectors, cache_dir) -> None:
    from training.services.iterations import backbone_for

    FeatureCache(cache_dir).put_many(
        {image.sha256: v for image, v in zip(images, vectors, strict=True)}, backbone_for(project)
    )


def _crafted(project, cache_dir):
    cat, dog = TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")
    cats = _images(project, cat, 12)
    dogs = _images(project, dog, 3)
    tiny = ImageFactory(project=project, width=100, height=80)  # untagged and small
    everything = [*cats, *dogs, tiny]
    rng = np.random.default_rng(0)
    from training.ml.backbones import get_backbone
    from training.services.iterations import backbone_for

    dim = get_backbone(backbone_for(project)).feature_dim
    vectors = rng.standard_normal((len(everything), dim)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01  # cats[0] ~ cats[1]: a plain copy
    vectors[12] = vectors[2] + 0.01  # dogs[0] ~ cats[2]: a copy with another tag
    _embed(project, everything, vectors, cache_dir)
    return cats, dogs, tiny


def _line(response, key):
    return next(line for line in response.context["lines"] if line["key"] == key)


def test_health_tab_lists_each_rule_and_links_to_the_images_that_break_it(
    project, users, client_for, cache_dir
) -> None:
    cats, dogs, tiny = _crafted(project, cache_dir)
    HealthReport.objects.create(project=project)
    check_health(project.pk)  # the worker's task, run here
    report = HealthReport.objects.get(project=project)
    assert report.status == "done" and report.fingerprint == data_fingerprint(project)
    client = client_for(users[str(Role.ANNOTATOR)])
    response = client.get(f"/projects/{project.pk}/health/")
    assert response.status_code == 200
    per_tag = _line(response, "images-per-tag")
    assert per_tag["status"] == "fail" and "“dog” (3 images)" in per_tag["message"]
    assert sorted(per_tag["image_ids"]) == sorted(d.pk for d in dogs)
    assert _line(response, "untagged")["image_ids"] == [tiny.pk]
    assert _line(response, "small-images")["image_ids"] == [tiny.pk]
    balance = _line(response, "balance")
    assert balance["status"] == "warn" and "“dog” has 3 images and “cat” 12" in balance["message"]
    assert "3 more images of “dog”" in balance["message"]
    dup = _line(response, "near-duplicates")
    assert sorted(dup["image_ids"]) == sorted([cats[0].pk, cats[1].pk, cats[2].pk, dogs[0].pk])
    conflict = _line(response, "label-conflicts")
    assert conflict["status"] == "fail"
    assert sorted(conflict["image_ids"]) == sorted([cats[2].pk, dogs[0].pk])
    assert _line(response, "leakage")["status"] == "pass"
    assert b'data-testid="health-link-label-conflicts"' in response.content
    # The link: the gallery shows exactly those images, and says which set it is.
    gallery = client.get(conflict["gallery_url"])
    assert gallery.status_code == 200
    shown = {image.pk for image in gallery.context["page"].images}
    assert shown == {cats[2].pk, dogs[0].pk}
    assert "Health check: Copies with different labels" in gallery.content.decode()
    assert client.get(f"/projects/{project.pk}/?health=nonsense").status_code == 404


def test_leakage_names_copies_split_across_folds_of_the_latest_iteration(
    project, users, client_for, cache_dir
) -> None:
    cats, dogs, _ = _crafted(project, cache_dir)
    iteration = Iteration.objects.create(
        project=project, number=1, name="Iteration 1", status="completed", backbone="lite0"
    )
    for fold, image in [(0, cats[0]), (1, cats[1]), (2, cats[2]), (2, dogs[0])]:
        row = IterationImage.objects.create(
            iteration=iteration, image=image, sha256=image.sha256, file_name=image.file.name
        )
        IterationScore.objects.create(iteration=iteration, iteration_image=row, fold=fold)
    HealthReport.objects.create(project=project)
    check_health(project.pk)
    response = client_for(users[str(Role.ADMIN)]).get(f"/api/projects/{project.pk}/health/")
    assert response.status_code == 200
    rules = {rule["key"]: rule for rule in response.json()["rules"]}
    assert rules["leakage"]["status"] == "warn" and "Iteration 1" in rules["leakage"]["message"]
    assert sorted(rules["leakage"]["image_ids"]) == sorted([cats[0].pk, cats[1].pk])
    assert response.json()["status"] == "done"


def test_a_change_to_the_data_makes_the_report_stale_and_queues_a_check(
    project, users, client_for, cache_dir
) -> None:
    _crafted(project, cache_dir)
    HealthReport.objects.create(project=project)
    check_health(project.pk)
    assert current_report(project).status == "done"  # nothing changed: no new check
    ImageFactory(project=project, width=640, height=480)  # an upload
    report = current_report(project)
    # Queued for the worker; with no broker in the tests the send fails and the report says so.
    assert report.status in ("queued", "failed")
    assert report.requested is not None


def test_a_lost_check_ends_failed_with_a_reason(project, cache_dir) -> None:
    from datetime import timedelta

    from django.utils import timezone

    report = HealthReport.objects.create(
        project=project, status="running", requested=timezone.now() - timedelta(hours=2)
    )
    current_report(project, refresh=False)
    report.refresh_from_db()
    assert report.status == "failed" and "did not finish" in report.failure_message


def test_the_train_page_links_to_the_health_check(project, users, client_for) -> None:
    response = client_for(users[str(Role.ADMIN)]).get(f"/projects/{project.pk}/train/")
    assert f'href="/projects/{project.pk}/health/"' in response.content.decode()


def test_the_sweep_refreshes_stale_reports_once_uploads_are_quiet(project, cache_dir) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from labeling.models import Image
    from training.tasks_health import sweep_health_task

    _crafted(project, cache_dir)
    assert sweep_health_task() == 0  # images arrived just now: an upload may be running
    assert not HealthReport.objects.filter(project=project).exists()
    Image.objects.filter(project=project).update(created=timezone.now() - timedelta(minutes=2))
    assert sweep_health_task() == 1
    report = HealthReport.objects.get(project=project)
    assert report.requested is not None and report.status in ("queued", "failed")
    # Once checked, an unchanged project is left alone.
    HealthReport.objects.filter(pk=report.pk).update(status="failed")
    check_health(project.pk)
    assert HealthReport.objects.get(pk=report.pk).status == "done"
    assert sweep_health_task() == 0


def test_the_first_visit_queues_the_first_check(project, users, client_for) -> None:
    ImageFactory(project=project, width=640, height=480)
    response = client_for(users[str(Role.ANNOTATOR)]).get(f"/projects/{project.pk}/health/")
    assert response.status_code == 200
    report = HealthReport.objects.get(project=project)
    # Sent to the queue (no broker in the tests: the failed send is recorded, nothing hangs).
    assert report.requested is not None and report.status in ("queued", "failed")


def test_the_worker_knows_the_tasks_and_beat_runs_the_sweep(settings) -> None:
    from project.celery import app

    app.loader.import_default_modules()
    assert {"training.check_health", "training.sweep_health"} <= set(app.tasks)
    assert any(
        entry["task"] == "training.sweep_health" and entry["schedule"] <= 60
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
    )


def test_a_rule_naming_very_many_images_links_to_the_first_ten_thousand(project, users) -> None:
    from training.services.health_set import health_set

    ids = list(range(1, 12_001))
    HealthReport.objects.create(
        project=project,
        status="done",
        results=[
            {
                "key": "untagged",
                "title": "Untagged images",
                "status": "warn",
                "message": "Many.",
                "image_ids": ids,
            }
        ],
    )
    image_set = health_set(users[str(Role.ADMIN)], project, {"health": "untagged"})
    assert list(image_set.image_ids) == ids[:10_000]
    assert image_set.label == "Health check: Untagged images (the first 10,000 of 12,000)"


def test_the_worker_embeds_what_the_cache_lacks_and_skips_an_unreadable_file(
    project, cache_dir
) -> None:
    from django.core.files.base import ContentFile

    cat = TagFactory(project=project, name="cat")
    images = _images(project, cat, 3)
    broken = images[2]
    broken.file.save("broken.png", ContentFile(b"not an image at all"), save=True)
    HealthReport.objects.create(project=project)
    check_health(project.pk)
    report = HealthReport.objects.get(project=project)
    assert report.status == "done", report.failure_message
    assert (report.image_count, report.embedded_count) == (3, 2)
    from training.services.iterations import backbone_for

    cached = FeatureCache(cache_dir).get_many([i.sha256 for i in images], backbone_for(project))
    assert set(cached) == {images[0].sha256, images[1].sha256}


def test_a_check_that_breaks_ends_failed_without_showing_the_error(
    project, cache_dir, monkeypatch
) -> None:
    import training.services.health as health

    def broken(*args, **kwargs):
        raise ValueError("internal detail /srv/loupe/secret.py line 3")

    monkeypatch.setattr(health, "gather_health_data", broken)
    HealthReport.objects.create(project=project, status="queued")
    check_health(project.pk)
    report = HealthReport.objects.get(project=project)
    assert report.status == "failed"
    assert "Try again later" in report.failure_message
    assert "ValueError" not in report.failure_message and "secret" not in report.failure_message
