"""The generated bad-input corpus (tests/robustness/bad_inputs.py) through every entry point
that takes files (issue 16, "Tests and figures").

Each (input, entry point) is one test. Each checks: the input is accepted or refused as its
corpus entry says, a refusal carries the entry point's verdict and reason, no response is a
500, the good batch-mate sent beside it lands, no import job is left running, no temp file is
left, no file is left in MEDIA_ROOT that no image row holds, and nothing is written outside
MEDIA_ROOT (zip-slip targets and the test's own directory are checked).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from customvision.ids import Kind, from_uuid, to_uuid
from labeling.models import Image, Membership, Project, Role
from labeling.services.api_keys import create_api_key
from labeling.services.import_jobs import _UNEXPECTED, DONE, FAILED, get_import
from labeling.tasks_import import import_dataset_task
from predictions.models import Prediction
from tests.factories import ProjectFactory, UserFactory
from tests.predictions import conftest as prediction_fixtures
from tests.robustness.bad_inputs import (
    ACCEPT,
    REFUSE,
    SLIP_NAME,
    BadArchive,
    BadImage,
    archive_corpus,
    b64,
    batch_mate,
    image_corpus,
)

# The prediction tests' fixtures: a really trained, published colour model and its key.
_isolated = prediction_fixtures._isolated
colour_artifact = prediction_fixtures.colour_artifact
trained = prediction_fixtures.trained

pytestmark = pytest.mark.django_db

IMAGES = image_corpus()
ARCHIVES = archive_corpus()
TRAINING = "/customvision/v3.3/Training"
BOUNDARY = "----loupe-corpus-boundary"
MATE = batch_mate()
MATE_SHA = hashlib.sha256(MATE).hexdigest()


@dataclass
class Verdict:
    status: int
    accepted: bool
    reason: str  # the refusal's code and message ("" when accepted)
    image_id: int | None = None  # the stored image, when the entry point stores one
    size: tuple[int, int] | None = None  # (width, height) the entry point reports
    mate_landed: bool | None = None  # None: the entry point takes one file


# --- The wire ----------------------------------------------------------------------------------


def _quote(name: str | bytes) -> bytes:
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    return raw.replace(b"\\", b"\\\\").replace(b'"', b"%22")


def _part(field: str, name: str | bytes | None, data: bytes) -> bytes:
    disposition = f'form-data; name="{field}"'.encode()
    if name is not None:
        disposition += b'; filename="' + _quote(name) + b'"'
    kind = b"application/octet-stream" if name is not None else b"text/plain"
    return (
        b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition
        + b"\r\nContent-Type: " + kind + b"\r\n\r\n" + data + b"\r\n"
    )  # fmt: skip


def _multipart(*parts: bytes) -> dict:
    return {
        "data": b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n",
        "content_type": f"multipart/form-data; boundary={BOUNDARY}",
    }


def _json_name(name: str | bytes) -> str:
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def _mate_landed(project: Project) -> bool:
    return project.images.filter(sha256=MATE_SHA).exists()


def _json_refusal(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    code, message = body.get("code"), body.get("message")
    assert code and message, body
    return f"{code}: {message}"


# --- Entry points that take an image -----------------------------------------------------------


def upload_api(ctx, bad: BadImage) -> Verdict:
    client = APIClient()
    client.force_authenticate(ctx.admin)
    response = client.generic(
        "POST",
        f"/api/projects/{ctx.project.pk}/images/upload/",
        **_multipart(_part("files", bad.filename, bad.data), _part("files", "mate.png", MATE)),
    )
    assert response.status_code == 201, response.content[:500]
    report = response.json()
    by_index = {item["index"]: item for item in report["accepted"] + report["rejected"]}
    assert sorted(by_index) == [0, 1]
    mine, mate = by_index[0], by_index[1]
    accepted = "image_id" in mine and "code" not in mine
    return Verdict(
        response.status_code,
        accepted,
        "" if accepted else f"{mine['code']}: {mine['message']}",
        mine.get("image_id") if accepted else None,
        (mine["width"], mine["height"]) if accepted else None,
        "code" not in mate,
    )


def upload_page(ctx, bad: BadImage) -> Verdict:
    client = Client()
    client.force_login(ctx.admin)
    before = set(ctx.project.images.values_list("pk", flat=True))
    response = client.generic(
        "POST",
        f"/projects/{ctx.project.pk}/upload/",
        **_multipart(_part("files", bad.filename, bad.data), _part("files", "mate.png", MATE)),
    )
    assert response.status_code == 200, response.content[:500]
    page = response.content.decode()
    new = ctx.project.images.exclude(pk__in=before).exclude(sha256=MATE_SHA)
    accepted = new.exists()
    reason = ""
    if not accepted:
        assert 'data-outcome="rejected" data-code="' in page, page[-3000:]
        reason = page.split('data-outcome="rejected" data-code="', 1)[1][:300]
    stored = new.first()
    return Verdict(
        200,
        accepted,
        reason,
        stored.pk if stored else None,
        (stored.width, stored.height) if stored else None,
        _mate_landed(ctx.project),
    )


def _cv_summary(response) -> tuple[Verdict, dict]:
    assert response.status_code in (200, 207), response.content[:500]
    rows = response.json()["images"]
    assert len(rows) == 2, rows
    mine, mate = rows
    accepted = mine["status"] in ("OK", "OKDuplicate") and mine.get("image")
    image = mine.get("image") or {}
    return Verdict(
        response.status_code,
        bool(accepted),
        "" if accepted else f"{mine['status']}",
        None,
        (image["width"], image["height"]) if accepted else None,
        mate["status"] == "OK",
    ), mine


def cv_training_files(ctx, bad: BadImage) -> Verdict:
    batch = {
        "images": [
            {"name": _json_name(bad.filename), "contents": b64(bad.data)},
            {"name": "mate.png", "contents": b64(MATE)},
        ]
    }
    response = Client().post(
        f"{TRAINING}/projects/{ctx.cv_project}/images/files",
        json.dumps(batch),
        content_type="application/json",
        HTTP_TRAINING_KEY=ctx.training_key,
    )
    return _cv_summary(response)[0]


def cv_training_data(ctx, bad: BadImage) -> Verdict:
    response = Client().generic(
        "POST",
        f"{TRAINING}/projects/{ctx.cv_project}/images",
        HTTP_TRAINING_KEY=ctx.training_key,
        **_multipart(
            _part("imageData", bad.filename, bad.data), _part("imageData", "mate.png", MATE)
        ),
    )
    return _cv_summary(response)[0]


def _prediction(response) -> Verdict:
    if response.status_code == 200:
        body = response.json()
        assert body["predictions"], body
        # The native API answers integer ids, Custom Vision's routes its UUIDs.
        pk = from_uuid(body["id"], Kind.PREDICTION) if body["id"] else None
        stored = Prediction.objects.get(pk=pk).image if pk else None
        return Verdict(
            200,
            True,
            "",
            stored.pk if stored else None,
            (stored.width, stored.height) if stored else None,
        )
    assert 400 <= response.status_code < 500, response.content[:500]
    return Verdict(response.status_code, False, _json_refusal(response))


def predict_native(ctx, bad: BadImage) -> Verdict:
    response = Client().post(
        ctx.trained.url(),
        bad.data,
        content_type="application/octet-stream",
        HTTP_PREDICTION_KEY=ctx.trained.key,
    )
    return _prediction(response)


def predict_customvision(ctx, bad: BadImage) -> Verdict:
    response = Client().generic(
        "POST",
        f"/customvision/v3.0/Prediction/{ctx.cv_project}/classify/iterations/prod/image",
        HTTP_PREDICTION_KEY=ctx.trained.key,
        **_multipart(_part("imageData", bad.filename, bad.data)),
    )
    return _prediction(response)


def cv_quick_test(ctx, bad: BadImage) -> Verdict:
    response = Client().post(
        f"{TRAINING}/projects/{ctx.cv_project}/quicktest/image",
        bad.data,
        content_type="application/octet-stream",
        HTTP_TRAINING_KEY=ctx.training_key,
    )
    return _prediction(response)


def quick_test_page(ctx, bad: BadImage) -> Verdict:
    client = Client()
    client.force_login(ctx.admin)
    before = set(Image.objects.values_list("pk", flat=True))
    response = client.generic(
        "POST",
        f"/projects/{ctx.project.pk}/predictions/quick-test/",
        **_multipart(
            _part("iteration", None, str(ctx.trained.iteration.pk).encode()),
            _part("store", None, b"on"),
            _part("image", bad.filename, bad.data),
        ),
    )
    page = response.content.decode()
    if response.status_code == 200:
        assert 'data-testid="quick-test-error"' not in page
        stored = Image.objects.exclude(pk__in=before).first()
        return Verdict(
            200,
            True,
            "",
            stored.pk if stored else None,
            (stored.width, stored.height) if stored else None,
        )
    assert response.status_code == 422, page[-2000:]
    assert 'class="notice error" role="alert"' in page, page[-2000:]
    return Verdict(422, False, page.split('class="notice error" role="alert"', 1)[1][:300])


IMAGE_ENTRY_POINTS: dict[str, Callable[..., Verdict]] = {
    "upload-api": upload_api,
    "upload-page": upload_page,
    "cv-training-files": cv_training_files,
    "cv-training-data": cv_training_data,
    "predict-api": predict_native,
    "predict-customvision": predict_customvision,
    "quick-test-page": quick_test_page,
    "cv-quick-test": cv_quick_test,
}


# --- What must hold around every call ----------------------------------------------------------


@dataclass
class Context:
    trained: object
    admin: object
    project: Project
    cv_project: str
    training_key: str


@pytest.fixture
def private_tmp(tmp_path, monkeypatch, settings) -> Path:
    """tempfile's directory for this test alone, so other processes' files never count."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _outside_media(tmp_path: Path) -> set[Path]:
    media = Path(settings.MEDIA_ROOT)
    return {p for p in _files(tmp_path) if media not in p.parents}


@pytest.fixture
def guard(tmp_path, private_tmp):
    """Snapshots before; after the call, no temp file, nothing outside MEDIA_ROOT, no file in
    MEDIA_ROOT that no image row (or the published iteration) holds."""
    temp_before = set(Path(tempfile.gettempdir()).iterdir())
    outside_before = _outside_media(tmp_path)
    media_before = _files(Path(settings.MEDIA_ROOT))
    yield
    assert set(Path(tempfile.gettempdir()).iterdir()) == temp_before, "a temp file was left"
    assert _outside_media(tmp_path) == outside_before, "a file was written outside MEDIA_ROOT"
    media = Path(settings.MEDIA_ROOT)
    held = {
        media / name
        for row in Image.objects.values_list("file", "thumbnail")
        for name in row
        if name
    }
    # An import keeps its job file in imports/; a stored quick test keeps the upload its
    # where-looked map is drawn from, with the iteration (deleted with it).
    kept = (media / "imports", media / "saliency")
    orphans = {
        p
        for p in _files(media) - media_before - held
        if not any(p.is_relative_to(k) for k in kept) or p.name == "archive.zip"
    }
    assert not orphans, f"files no image row holds: {sorted(map(str, orphans))}"
    assert not (Path("/tmp") / SLIP_NAME).exists()


@pytest.fixture
def ctx(trained, guard) -> Context:
    admin = trained.admin
    return Context(
        trained=trained,
        admin=admin,
        project=trained.project,
        cv_project=to_uuid(Kind.PROJECT, trained.project.pk),
        training_key=create_api_key(user=admin, kind="training", name="corpus").secret,
    )


# A browser sends filename="" for a file input left empty, so to the quick test form a part
# whose name is empty once made safe ("", "..") is no file: refused, saying to choose one.
NO_FILE_AT_QUICK_TEST_PAGE = {"name-empty", "name-dots-only"}


@pytest.mark.parametrize("entry", list(IMAGE_ENTRY_POINTS))
@pytest.mark.parametrize("bad", IMAGES, ids=[bad.id for bad in IMAGES])
def test_image_input(ctx, bad: BadImage, entry: str) -> None:
    media = Path(settings.MEDIA_ROOT)
    before = _files(media)
    verdict = IMAGE_ENTRY_POINTS[entry](ctx, bad)
    assert verdict.status != 500
    if not verdict.accepted and verdict.mate_landed is None:
        assert _files(media) == before, "a refused prediction left a file"
    if entry == "quick-test-page" and bad.id in NO_FILE_AT_QUICK_TEST_PAGE:
        assert not verdict.accepted and "Choose an image file" in verdict.reason
    elif bad.expect == ACCEPT:
        assert verdict.accepted, f"refused: {verdict.reason}"
    elif bad.expect == REFUSE:
        assert not verdict.accepted, "accepted"
    if not verdict.accepted:
        assert len(verdict.reason.strip()) > 3, verdict
    if verdict.accepted and bad.upright and verdict.size:
        assert verdict.size == bad.upright, "not upright"
    if verdict.image_id is not None:
        stored = Image.objects.get(pk=verdict.image_id)
        path = Path(stored.file.path).resolve()
        assert Path(settings.MEDIA_ROOT).resolve() in path.parents
        # No path, NUL, control character or lone surrogate in the stored name.
        assert stored.original_name.isprintable() and "/" not in stored.original_name
    if verdict.mate_landed is not None:
        assert verdict.mate_landed, "the good batch-mate did not land"


# --- Entry points that take an archive ---------------------------------------------------------


def _project_for(archive: BadArchive, admin) -> Project:
    kind = (
        Project.Kind.DETECTION
        if archive.format in ("coco", "voc", "yolo")
        else Project.Kind.MULTICLASS
    )
    project = ProjectFactory(kind=kind, owner=admin)
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    return project


def import_page(client, project, archive: BadArchive, capture) -> tuple[int, str | None, str]:
    form = {
        "format": archive.format,
        "contents": "labels" if archive.labels_only else "images",
        "archive": SimpleUploadedFile(archive.upload_name, archive.data),
    }
    with capture(execute=False):
        response = client.post(f"/projects/{project.pk}/datasets/", form)
    if response.status_code == 302:
        return 302, response.url.split("job=")[1], ""
    assert response.status_code == 422, response.content[:500]
    return 422, None, response.content.decode()


def import_api(client, project, archive: BadArchive, capture) -> tuple[int, str | None, str]:
    form = {
        "format": archive.format,
        "contents": "labels" if archive.labels_only else "images",
        "archive": SimpleUploadedFile(archive.upload_name, archive.data),
    }
    with capture(execute=False):
        response = client.post(f"/api/projects/{project.pk}/imports/", form)
    if response.status_code == 202:
        return 202, response.json()["job_id"], ""
    assert response.status_code in (400, 422), response.content[:500]
    return response.status_code, None, _api_refusal(response)


def _api_refusal(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    assert body.get("message") or body.get("errors") or body.get("detail"), body
    return json.dumps(body)


ARCHIVE_ENTRY_POINTS = {"import-page": import_page, "import-api": import_api}


@pytest.mark.parametrize("entry", list(ARCHIVE_ENTRY_POINTS))
@pytest.mark.parametrize("archive", ARCHIVES, ids=[a.id for a in ARCHIVES])
def test_archive_input(
    client, guard, django_capture_on_commit_callbacks, archive: BadArchive, entry: str
) -> None:
    admin = UserFactory(username="corpus-admin")
    project = _project_for(archive, admin)
    if entry == "import-page":
        client.force_login(admin)
        caller = client
    else:
        caller = APIClient()
        caller.force_authenticate(admin)
    status, job_id, refusal = ARCHIVE_ENTRY_POINTS[entry](
        caller, project, archive, django_capture_on_commit_callbacks
    )
    assert status != 500
    if job_id is None:
        assert archive.expect != ACCEPT, refusal
        assert refusal.strip()
        return
    state = import_dataset_task(project.pk, job_id, admin.pk, archive.format)
    job = get_import(project=project, job_id=job_id)
    assert job.is_finished and state in (DONE, FAILED), job
    if state == FAILED:
        assert job.message and job.message != _UNEXPECTED, job.message
        assert archive.expect != ACCEPT, job.message
    elif archive.expect == REFUSE:
        assert job.problems, job  # done, but each refused item says why
    else:
        assert not job.problems, job.problems
    # No entity was expanded (XXE, billion laughs): tag names stay short, hold no file and
    # no control character (PostgreSQL refuses a NUL).
    for name in project.tags.values_list("name", flat=True):
        assert len(name) < 200 and "root:" not in name and name.isprintable(), name[:80]
    assert not list((Path(settings.MEDIA_ROOT) / "imports").rglob("archive.zip"))
    media = Path(settings.MEDIA_ROOT)
    for base in (media, media / "imports" / str(project.pk) / job_id / "cat", Path.cwd()):
        for target in archive.slip_targets:
            assert not (base / target).resolve().exists(), f"{target} written from {base}"
    if state == DONE and archive.format == "folders":
        assert project.images.filter(original_name="a.png").exists(), job
