"""Import a Custom Vision project from a live Loupe server speaking the Custom Vision Training
API (customvision/): the copy has the source's kind, domain, tags, images (sha256) and labels;
an interrupted import resumes without storing any image twice; what cannot be copied is
refused with its reason."""

from __future__ import annotations

import hashlib
import threading

import httpx
import pytest
from django.core.management import CommandError, call_command

from customvision.ids import Kind, to_uuid
from labeling.models import Image, ImageTag, Membership, Project, Region, Role, Tag
from labeling.services.api_keys import create_api_key
from labeling.services.customvision_import import (
    get_customvision_import,
    open_customvision_import,
    run_customvision_import,
)
from labeling.services.customvision_import.status import write_job
from tests.conftest import make_image
from tests.factories import ImageFactory, ProjectFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner():
    return UserFactory(username="mover", is_staff=True)


@pytest.fixture
def key(owner):
    return create_api_key(user=owner, kind="training", name="import").secret


def source_detection(owner, images: int = 10) -> Project:
    project = ProjectFactory(
        kind=Project.Kind.DETECTION, domain=Project.Domain.GENERAL, name="Parking lot"
    )
    Membership.objects.create(project=project, user=owner, role=Role.ADMIN)
    car, bike = TagFactory(project=project, name="car"), TagFactory(project=project, name="bike")
    negative = TagFactory(project=project, name="Negative", kind=Tag.Kind.NEGATIVE)
    for number in range(images):
        image = ImageFactory(
            project=project,
            original_name=f"lot{number}.png",
            width=40,
            height=30,
            content=make_image(40, 30, (number * 3, 255 - number * 3, 90)),  # unique to 85
        )
        if number % 3 == 0:
            ImageTag.objects.create(image=image, tag=negative)
        elif number % 3 == 1:
            Region.objects.create(
                image=image, tag=car, left=0.123456789, top=0.2, width=0.3, height=0.4
            )
            Region.objects.create(
                image=image, tag=bike, left=0.5, top=0.5, width=0.25, height=0.333333333
            )
        else:
            continue  # untagged
        Image.objects.filter(pk=image.pk).update(is_tagged=True)
    return project


def snapshot(project: Project) -> dict:
    shas = {image.pk: image.sha256 for image in project.images.all()}
    for image in project.images.all():
        with image.file.open("rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == image.sha256
    boxes = sorted(
        (shas[r.image_id], r.tag.name, round(r.left, 9), round(r.top, 9), r.width, r.height)
        for r in Region.objects.filter(image__project=project).select_related("tag")
    )
    labels = sorted(
        (shas[t.image_id], t.tag.name, t.tag.kind)
        for t in ImageTag.objects.filter(image__project=project).select_related("tag")
    )
    return {
        "images": sorted(shas.values()),
        "tags": sorted(project.tags.values_list("name", "kind")),
        "boxes": boxes,
        "labels": labels,
        "tagged": sorted(shas[i.pk] for i in project.images.filter(is_tagged=True)),
    }


def run(endpoint, key, source, owner, transport=None):
    job = open_customvision_import(
        endpoint=endpoint,
        training_key=key,
        source_project_id=to_uuid(Kind.PROJECT, source.pk),
        by=owner,
    )
    return run_customvision_import(job_id=job.job_id, training_key=key, transport=transport)


class DropsAfter(httpx.HTTPTransport):
    """The network going away after `downloads` image files (an interruption half-way)."""

    def __init__(self, downloads: int) -> None:
        super().__init__()
        self.left = downloads
        self.lock = threading.Lock()  # files are downloaded a few at once

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "/media/" in request.url.path:
            with self.lock:
                self.left -= 1
                if self.left < 0:
                    raise httpx.ConnectError("connection reset by peer", request=request)
        return super().handle_request(request)


def test_a_detection_project_comes_over_whole(live_server, owner, key):
    source = source_detection(owner)
    job = run(live_server.url, key, source, owner)
    assert job.state == "done", job.message
    copy = Project.objects.get(pk=job.target_project_id)
    assert (copy.name, copy.kind, copy.domain) == ("Parking lot", "detection", "general")
    assert Membership.objects.get(project=copy, user=owner).role == Role.ADMIN
    original = snapshot(source)
    assert snapshot(copy) == original
    assert len(original["boxes"]) == 6 and len(original["tagged"]) == 7
    assert (job.total, len(job.copied), job.refused) == (10, 10, [])
    assert job.message == "Copied 10 of 10 images."


def test_an_interrupted_import_resumes_and_never_stores_an_image_twice(live_server, owner, key):
    source = source_detection(owner, images=80)
    first = run(live_server.url, key, source, owner, transport=DropsAfter(downloads=40))
    assert first.state == "failed"
    assert "did not answer" in first.message or "failed" in first.message
    assert "continues where it stopped" in first.message
    copy = Project.objects.get(pk=first.target_project_id)
    # Half-way: the first batch of 32 stored, the network gone 8 files into the second.
    assert 0 < copy.images.count() <= 40
    second = run(live_server.url, key, source, owner)
    assert second.state == "done", second.message
    assert second.target_project_id == copy.pk and second.runs == 2
    assert copy.images.count() == 80  # each image once
    assert snapshot(copy) == snapshot(source)
    # A third run finds nothing left to copy and changes nothing.
    third = run(live_server.url, key, source, owner)
    assert third.state == "done" and copy.images.count() == 80
    # A run killed after storing images but before saving its status: the next run finds
    # them stored (same sha256) and maps them instead of storing them again.
    lost = get_customvision_import(job_id=third.job_id, user=owner)
    lost.copied = {}
    write_job(lost)
    fourth = run(live_server.url, key, source, owner)
    assert (fourth.state, len(fourth.copied), fourth.refused) == ("done", 80, [])
    assert copy.images.count() == 80 and snapshot(copy) == snapshot(source)


def test_an_image_whose_file_is_gone_is_refused_with_its_reason(live_server, owner, key):
    source = ProjectFactory(kind=Project.Kind.MULTILABEL, name="Fruit")
    Membership.objects.create(project=source, user=owner, role=Role.ADMIN)
    apple = TagFactory(project=source, name="apple")
    kept = ImageFactory(project=source, content=make_image(9, 9, (1, 2, 3)), is_tagged=True)
    ImageTag.objects.create(image=kept, tag=apple)
    gone = ImageFactory(project=source, content=make_image(9, 9, (4, 5, 6)))
    gone.file.storage.delete(gone.file.name)
    job = run(live_server.url, key, source, owner)
    assert job.state == "done"
    assert job.message == "Copied 1 of 2 images; 1 refused (listed below)."
    assert job.refused == [
        {
            "item": to_uuid(Kind.IMAGE, gone.pk),
            "code": "download_failed",
            "message": "Its file answered 404.",
        }
    ]
    copy = Project.objects.get(pk=job.target_project_id)
    assert copy.kind == "multilabel"
    assert [t.tag.name for t in ImageTag.objects.filter(image__project=copy)] == ["apple"]


def test_a_compact_multiclass_project_comes_over_compact_without_a_note(live_server, owner, key):
    source = ProjectFactory(
        kind=Project.Kind.MULTICLASS, domain=Project.Domain.GENERAL_COMPACT, name="Phone app"
    )
    Membership.objects.create(project=source, user=owner, role=Role.ADMIN)
    cat = TagFactory(project=source, name="cat")
    for number in range(3):
        image = ImageFactory(
            project=source, content=make_image(12, 9, (number, 9, 9)), is_tagged=True
        )
        ImageTag.objects.create(image=image, tag=cat)
    job = run(live_server.url, key, source, owner)
    assert job.state == "done", job.message
    copy = Project.objects.get(pk=job.target_project_id)
    assert (copy.kind, copy.domain) == ("multiclass", "general_compact")
    assert job.notes == [] and snapshot(copy) == snapshot(source)


class AzureDomain(httpx.HTTPTransport):
    """The endpoint describing the project's domain as Azure would for one Loupe has no model
    for (a Loupe server offers General and General (compact) only)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if "/domains/" in request.url.path:
            response.read()
            domain = {**response.json(), "name": self.name}
            return httpx.Response(200, json=domain, request=request)
        return response


@pytest.mark.parametrize(
    ("azure", "loupe"), [("Food", "general"), ("Retail (compact)", "general_compact")]
)
def test_a_domain_without_a_loupe_model_comes_over_as_general_and_says_so(
    live_server, owner, key, azure, loupe, client
):
    source = source_detection(owner, images=2)
    job = run(live_server.url, key, source, owner, transport=AzureDomain(azure))
    assert job.state == "done", job.message
    copy = Project.objects.get(pk=job.target_project_id)
    assert copy.domain == loupe
    (note,) = job.notes
    assert note.startswith(f"Custom Vision's {azure} domain has no Loupe model")
    assert get_customvision_import(job_id=job.job_id, user=owner).report()["notes"] == [note]
    client.force_login(owner)
    page = client.get(f"/projects/import/customvision/?job={job.job_id}").content.decode()
    assert 'data-testid="cv-import-note"' in page and "has no Loupe model" in page


def test_the_command_reports_and_a_wrong_key_fails_with_a_reason(live_server, owner, key, capsys):
    source = source_detection(owner, images=4)
    project_id = to_uuid(Kind.PROJECT, source.pk)
    call_command(
        "import_customvision",
        "--endpoint",
        live_server.url,
        "--training-key",
        key,
        "--project",
        project_id,
        "--user",
        owner.username,
    )
    out = capsys.readouterr().out
    assert "Copied 4 of 4 images." in out and "Loupe project:" in out
    with pytest.raises(CommandError, match="refused the training key"):
        call_command(
            "import_customvision",
            "--endpoint",
            live_server.url,
            "--training-key",
            "lpt_wrong",
            "--project",
            "f" * 8 + "-0000-4000-8000-000000000000",
            "--user",
            owner.username,
        )


def test_only_project_creators_start_one_and_see_their_own(live_server, owner, key):
    member = UserFactory(username="plain")
    with pytest.raises(Exception, match="reserved"):
        open_customvision_import(
            endpoint=live_server.url, training_key=key, source_project_id="x", by=member
        )
    source = source_detection(owner, images=1)
    job = run(live_server.url, key, source, owner)
    with pytest.raises(Exception, match="does not exist"):
        get_customvision_import(job_id=job.job_id, user=member)


def test_the_page_starts_an_import_a_real_worker_runs(
    live_server, owner, key, client, celery_worker_redis
):
    from tests.worker import wait_for

    source = source_detection(owner, images=5)
    client.force_login(owner)
    assert 'data-testid="import-customvision"' in client.get("/").content.decode()
    form = {
        "endpoint": live_server.url,
        "training_key": key,
        "project_id": to_uuid(Kind.PROJECT, source.pk),
    }
    response = client.post("/projects/import/customvision/", form)
    assert response.status_code == 302
    job_id = response.url.split("job=")[1]
    job = wait_for(
        lambda: (j := get_customvision_import(job_id=job_id, user=owner)).is_finished and j,
        timeout_s=60,
        what="the Custom Vision import",
    )
    assert job.state == "done", job.message
    page = client.get(response.url).content.decode()
    assert "Copied 5 of 5 images." in page and f"/projects/{job.target_project_id}/" in page
    assert key not in page and key not in str(job.__dict__)  # the key is never stored or shown
    bad = client.post("/projects/import/customvision/", {**form, "endpoint": "ftp://x"})
    assert bad.status_code == 422 and "http(s) address" in bad.content.decode()


def test_the_api_starts_and_reports_an_import(live_server, owner, key, celery_worker_redis):
    from rest_framework.test import APIClient

    from tests.worker import wait_for

    source = source_detection(owner, images=3)
    api = APIClient()
    api.force_authenticate(owner)
    started = api.post(
        "/api/customvision-imports/",
        {
            "endpoint": live_server.url,
            "training_key": key,
            "project_id": to_uuid(Kind.PROJECT, source.pk),
        },
        format="json",
    )
    assert started.status_code == 202, started.content
    url = f"/api/customvision-imports/{started.json()['id']}/"
    body = wait_for(
        lambda: (b := api.get(url).json())["state"] in {"done", "failed"} and b,
        timeout_s=60,
        what="the Custom Vision import",
    )
    assert body["state"] == "done", body["message"]
    assert (body["images_total"], body["images_copied"], body["refused"]) == (3, 3, [])
    assert api.get("/api/customvision-imports/nope/").status_code == 404
    assert api.post("/api/customvision-imports/", {}, format="json").status_code == 400


def test_the_sweep_ends_a_run_that_vanished_and_a_start_resumes_it(owner, key, settings):
    import time

    from labeling.services.customvision_import import sweep_customvision_imports

    job = open_customvision_import(
        endpoint="http://cv.invalid", training_key=key, source_project_id="abc", by=owner
    )
    job.state, job.lease_expires = "running", time.time() - 1  # its worker died
    write_job(job)
    assert sweep_customvision_imports() == 1
    failed = get_customvision_import(job_id=job.job_id, user=owner)
    assert failed.state == "failed" and "stopped without a word" in failed.message
    assert "continues where it stopped" in failed.message
    waiting = open_customvision_import(
        endpoint="http://cv.invalid/", training_key=key, source_project_id="ABC", by=owner
    )
    assert waiting.job_id == job.job_id and waiting.state == "queued"  # the same job again
    later = time.time() + settings.LOUPE_IMPORT_QUEUED_MAX_S + 1
    assert sweep_customvision_imports(now=later) == 1
    assert "No worker took" in get_customvision_import(job_id=job.job_id, user=owner).message
